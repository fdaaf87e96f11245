/**
 * The rule the browser test judges tokens by (agreement.ts), on runs built
 * so that the answer is known: equal runs, a near-tie, a real difference
 * hidden behind equal tokens, and a wrong token with a wide gap.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compareSample, LOGIT_TOLERANCE, type SampleRun } from "./agreement.ts"

const VOCAB = 6

/** A greedy run: each step's logits, and the argmax of each as its token. */
const greedy = (logits: ReadonlyArray<ReadonlyArray<number>>): SampleRun => ({
  logits,
  tokens: logits.map((row) => row.indexOf(Math.max(...row)))
})

const steps = fc.array(fc.array(fc.double({ min: -20, max: 20, noNaN: true }), { minLength: VOCAB, maxLength: VOCAB }), { minLength: 1, maxLength: 6 })

describe("compareSample", () => {
  it("finds equal runs equal, and rounding-sized logit differences too", () => {
    fc.assert(fc.property(steps, (logits) => {
      const nudged = logits.map((row) => row.map((x, i) => x + (i % 2 === 0 ? 1 : -1) * 1e-7))
      const a = greedy(logits)
      expect(compareSample(a, a)).toEqual({ kind: "equal", maxLogitDiff: 0 })
      const b = greedy(nudged)
      if (b.tokens.join() === a.tokens.join()) expect(compareSample(b, a).kind).toBe("equal")
    }))
  })

  it("accepts a different token where the two top logits are within tolerance, and compares nothing after it", () => {
    const tie = [0, 5, 5 + 1e-6, 1, 2, 3]
    const page: SampleRun = { tokens: [2, 4, 4], logits: [[...tie], [0, 0, 0, 0, 9, 0], [0, 0, 0, 0, 9, 0]] }
    const node: SampleRun = { tokens: [1, 0], logits: [[...tie].map((x, i) => (i === 1 ? x + 2e-6 : x)), [9, 0, 0, 0, 0, 0]] }
    const agreement = compareSample(page, node)
    expect(agreement.kind).toBe("near-tie")
    expect(agreement).toMatchObject({ at: 0 })
  })

  it("refuses a different token with a wide gap, logits beyond tolerance behind equal tokens, and runs of different lengths", () => {
    const wide = compareSample(greedy([[0, 9, 1, 0, 0, 0]]), greedy([[0, 1, 9, 0, 0, 0]]))
    expect(wide.kind).toBe("differ")
    const hidden = compareSample(greedy([[0, 9, 1, 0, 0, 0]]), greedy([[0, 9, 1 + 20 * LOGIT_TOLERANCE * 9, 0, 0, 0]]))
    expect(hidden).toMatchObject({ kind: "differ" })
    expect(compareSample(greedy([[0, 9, 0, 0, 0, 0]]), greedy([[0, 9, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0]])).kind).toBe("differ")
  })
})
