import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  attendSegment,
  emptyState,
  mergeStates,
  referencePlanAttention,
  referenceTreeAttention,
  type AttentionState
} from "../src/attention/reference.ts"
import { arbitraryCase, buildCase, HEAD_DIMS, compareOutputs, describeMismatches } from "./attention-fixtures.ts"

const DIM = 4

const vector = (magnitude: number) => fc.array(fc.double({ min: -magnitude, max: magnitude, noNaN: true }), { minLength: DIM, maxLength: DIM })

const state: fc.Arbitrary<AttentionState> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(emptyState(DIM)) },
  {
    weight: 4,
    arbitrary: fc.record({ o: vector(5).map((v) => Float64Array.from(v)), lse: fc.double({ min: -60, max: 60, noNaN: true }) })
  }
)

/** A segment of tokens whose scores reach `magnitude` (scale 1, so scores are q·k). */
const segment = (magnitude: number) =>
  fc.record({
    q: vector(1),
    tokens: fc.array(fc.record({ k: vector(magnitude / DIM), v: vector(3) }), { minLength: 0, maxLength: 12 })
  })

const attend = (q: ReadonlyArray<number>, tokens: ReadonlyArray<{ k: Array<number>; v: Array<number> }>) =>
  attendSegment(q, tokens.map((t) => t.k), tokens.map((t) => t.v), 1)

/** `valueScale`: the size of the values averaged (an output can cancel to near 0 while rounding errors stay at their scale). */
const close = (a: AttentionState, b: AttentionState, tolerance = 1e-9, valueScale = 0): boolean => {
  if (a.lse === -Infinity || b.lse === -Infinity) return a.lse === b.lse && a.o.every((x, i) => x === 0 && b.o[i] === 0)
  if (Math.abs(a.lse - b.lse) > tolerance * Math.max(1, Math.abs(b.lse))) return false
  const size = Math.max(1e-12, valueScale, ...b.o.map(Math.abs))
  return a.o.every((x, i) => Math.abs(x - b.o[i]!) <= tolerance * size)
}

describe("attention reference: merge of partial states", () => {
  it("is commutative", () => {
    fc.assert(fc.property(state, state, (a, b) => close(mergeStates([a, b], DIM), mergeStates([b, a], DIM))))
  })

  it("is associative", () => {
    fc.assert(
      fc.property(state, state, state, (a, b, c) =>
        close(mergeStates([mergeStates([a, b], DIM), c], DIM), mergeStates([a, mergeStates([b, c], DIM)], DIM))
      )
    )
  })

  it("has (0, −∞) as identity and never gives NaN for empty states", () => {
    fc.assert(fc.property(state, (a) => close(mergeStates([a, emptyState(DIM)], DIM), mergeStates([a], DIM))))
    for (const states of [[], [emptyState(DIM)], [emptyState(DIM), emptyState(DIM), emptyState(DIM)]]) {
      const merged = mergeStates(states, DIM)
      expect(merged.lse).toBe(-Infinity)
      expect([...merged.o]).toEqual(new Array(DIM).fill(0))
    }
  })

  it("attending a segment equals merging the states of any split of it", () => {
    fc.assert(
      fc.property(segment(50), fc.array(fc.nat(), { maxLength: 4 }), ({ q, tokens }, cuts) => {
        const points = [0, ...cuts.map((c) => c % (tokens.length + 1)).sort((x, y) => x - y), tokens.length]
        const parts = points.slice(1).map((end, i) => attend(q, tokens.slice(points[i]!, end)))
        // an output can cancel to near 0 while the merge's rounding stays at the values' scale
        const valueScale = Math.max(0, ...tokens.flatMap((t) => t.v.map(Math.abs)))
        return close(mergeStates(parts, DIM), attend(q, tokens), 1e-9, valueScale)
      }),
      // values 3 and −3 (nearly) under equal weights: their mean, 2e-7, is all cancellation
      { examples: [[{ q: [0, 0, 0, 0], tokens: [[0, 2.9999997614654608], [0, 0], [0, 0], [0, -2.999999206354875]].map(([a, b]) => ({ k: [0, 0, 0, 0], v: [0, 0, a!, b!] })) }, [646212086]]] }
    )
  })

  it("agrees with a direct softmax over the concatenated path, score magnitudes up to 50 without overflow", () => {
    fc.assert(
      fc.property(fc.array(segment(50), { minLength: 1, maxLength: 4 }), (segments) => {
        const q = segments[0]!.q
        const all = segments.flatMap((s) => s.tokens)
        const merged = mergeStates(segments.map((s) => attend(q, s.tokens)), DIM)
        // the textbook formula, in float64: exp(50) is far from overflow
        const scores = all.map((t) => t.k.reduce((sum, k, c) => sum + k * q[c]!, 0))
        const weights = scores.map(Math.exp)
        const total = weights.reduce((a, b) => a + b, 0)
        const direct: AttentionState =
          all.length === 0
            ? emptyState(DIM)
            : { o: Float64Array.from({ length: DIM }, (_, c) => all.reduce((o, t, i) => o + (weights[i]! / total) * t.v[c]!, 0)), lse: Math.log(total) }
        const valueScale = Math.max(0, ...all.flatMap((t) => t.v.map(Math.abs)))
        return close(merged, direct, 1e-9, valueScale) && Number.isFinite(merged.o[0]) && !Number.isNaN(merged.lse)
      })
    )
  })

  it("stays finite where a naive exp would overflow", () => {
    const huge = attendSegment([1], [[800], [799]], [[1], [3]], 1)
    expect(huge.lse).toBeCloseTo(800 + Math.log(1 + Math.exp(-1)), 9)
    const merged = mergeStates([huge, attendSegment([1], [[-800]], [[5]], 1)], 1)
    expect(Number.isFinite(merged.o[0])).toBe(true)
  })
})

describe("attention reference: plan over pools equals the tree oracle", () => {
  it("on random trees (block tables, start slots, GQA, causal limits)", () => {
    const bounds = { maxDepth: 4, maxFanOut: 8, maxNodes: 12, maxLength: 40, maxSequences: 8, maxWork: 400_000, causal: true, headDims: HEAD_DIMS }
    fc.assert(
      fc.property(arbitraryCase(bounds), (spec) => {
        const built = buildCase(spec)
        const shape = built.tree
        const problems = compareOutputs(
          referencePlanAttention(built.plan, shape, built.inputs),
          referenceTreeAttention(built.tree),
          shape.heads,
          shape.headDim,
          1e-9
        )
        if (problems.length > 0) throw new Error(describeMismatches(problems))
      }),
      { numRuns: 60 }
    )
  })
})
