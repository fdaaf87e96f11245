import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { defaultKs, passAtK, summarizePassAtK } from "../src/pipeline/passAtK.ts"

const binomial = (n: number, k: number): number => {
  let value = 1
  for (let i = 1; i <= k; i++) value = (value * (n - k + i)) / i
  return value
}

/** n, c ≤ n, k ≤ n */
const counts = fc.integer({ min: 1, max: 200 }).chain((n) =>
  fc.record({ n: fc.constant(n), c: fc.integer({ min: 0, max: n }), k: fc.integer({ min: 1, max: n }) })
)

describe("pass@k", () => {
  it("matches hand-computed fractions", () => {
    // 1 − C(7,5)/C(10,5) = 1 − 21/252
    expect(passAtK(10, 3, 5)).toBeCloseTo(11 / 12, 12)
    // 1 − C(4,2)/C(5,2) = 1 − 6/10
    expect(passAtK(5, 1, 2)).toBeCloseTo(2 / 5, 12)
    // 1 − C(2,2)/C(4,2) = 1 − 1/6
    expect(passAtK(4, 2, 2)).toBeCloseTo(5 / 6, 12)
    // 1 − C(18,10)/C(20,10) = 1 − 43758/184756
    expect(passAtK(20, 2, 10)).toBeCloseTo(1 - 43758 / 184756, 12)
  })

  it("agrees with the binomial definition where binomials are small", () => {
    fc.assert(
      fc.property(counts.filter(({ n }) => n <= 40), ({ n, c, k }) => {
        const direct = 1 - binomial(n - c, k) / binomial(n, k)
        expect(passAtK(n, c, k)).toBeCloseTo(direct, 9)
      })
    )
  })

  it("is 0 with no passes, 1 with all passes, c/n at k = 1, and within [0, 1]", () => {
    fc.assert(
      fc.property(counts, ({ n, c, k }) => {
        expect(passAtK(n, 0, k)).toBe(0)
        expect(passAtK(n, n, k)).toBe(1)
        expect(passAtK(n, c, 1)).toBeCloseTo(c / n, 12)
        const value = passAtK(n, c, k)
        expect(value).toBeGreaterThanOrEqual(0)
        expect(value).toBeLessThanOrEqual(1)
      })
    )
  })

  it("grows with c and with k", () => {
    fc.assert(
      fc.property(counts, ({ n, c, k }) => {
        if (c < n) expect(passAtK(n, c + 1, k)).toBeGreaterThanOrEqual(passAtK(n, c, k) - 1e-12)
        if (k < n) expect(passAtK(n, c, k + 1)).toBeGreaterThanOrEqual(passAtK(n, c, k) - 1e-12)
      })
    )
  })

  it("stays finite for large n, where the binomials overflow", () => {
    expect(passAtK(10_000, 1, 5000)).toBeCloseTo(0.5, 12)
    expect(Number.isFinite(passAtK(100_000, 3, 50))).toBe(true)
  })

  it("rejects counts outside its domain", () => {
    expect(() => passAtK(5, 6, 1)).toThrow(RangeError)
    expect(() => passAtK(5, 1, 6)).toThrow(RangeError)
    expect(() => passAtK(5, 1, 0)).toThrow(RangeError)
    expect(() => passAtK(5, 1.5, 1)).toThrow(RangeError)
  })

  it("offers k = 1, 5, 10, 50, 100 … up to n", () => {
    expect(defaultKs(1)).toEqual([1])
    expect(defaultKs(10)).toEqual([1, 5, 10])
    expect(defaultKs(120)).toEqual([1, 5, 10, 50, 100])
  })

  it("averages over problems, only for k every problem has samples for", () => {
    const summary = summarizePassAtK([
      { problemId: "a", n: 10, c: 3 },
      { problemId: "b", n: 5, c: 0 }
    ])
    expect(summary.ks).toEqual([1, 5])
    expect(summary.perProblem[0]?.values[0]).toBeCloseTo(0.3, 12)
    expect(summary.overall[0]).toBeCloseTo(0.15, 12)
    expect(summary.overall[1]).toBeCloseTo((11 / 12 + 0) / 2, 12)
    expect(summarizePassAtK([]).overall).toEqual([])
  })
})
