/**
 * Float64 CPU reference for attention (DESIGN.md, "The math"). Every GPU
 * attention path is checked against these functions.
 *
 * For one query row q over a segment of n tokens, with scale s:
 *     scores_i = s · q·K_i,   lse = log Σ_i exp(scores_i),   o = Σ_i exp(scores_i − lse) · V_i
 * and partial states merge by
 *     lse = m + log Σ_j exp(lse_j − m)  (m = max_j lse_j),   o = Σ_j exp(lse_j − lse) · o_j
 * with the empty state (0, −∞) as identity.
 */
import type { LevelPlan } from "@canopy/tree-cache"

/** A partial attention state: output vector and natural-log sum of exponentiated scores. */
export interface AttentionState {
  readonly o: Float64Array
  readonly lse: number
}

export const emptyState = (dim: number): AttentionState => ({ o: new Float64Array(dim), lse: -Infinity })

/**
 * Attends one query over a segment given as per-token key and value vectors.
 * The max score is subtracted before exponentiating, so large magnitudes do not overflow.
 */
export const attendSegment = (
  q: ArrayLike<number>,
  keys: ReadonlyArray<ArrayLike<number>>,
  values: ReadonlyArray<ArrayLike<number>>,
  scale: number
): AttentionState => {
  const dim = q.length
  const n = keys.length
  if (n === 0) return emptyState(dim)
  const scores = new Float64Array(n)
  let max = -Infinity
  for (let i = 0; i < n; i++) {
    const k = keys[i]!
    let dot = 0
    for (let c = 0; c < dim; c++) dot += q[c]! * k[c]!
    scores[i] = scale * dot
    if (scores[i]! > max) max = scores[i]!
  }
  let sum = 0
  const o = new Float64Array(dim)
  for (let i = 0; i < n; i++) {
    const w = Math.exp(scores[i]! - max)
    sum += w
    const v = values[i]!
    for (let c = 0; c < dim; c++) o[c]! += w * v[c]!
  }
  for (let c = 0; c < dim; c++) o[c]! /= sum
  return { o, lse: max + Math.log(sum) }
}

/** Merges partial states; only empty states (or none) give (0, −∞), never NaN. */
export const mergeStates = (states: ReadonlyArray<AttentionState>, dim: number): AttentionState => {
  let max = -Infinity
  for (const s of states) if (s.lse > max) max = s.lse
  if (max === -Infinity) return emptyState(dim)
  let sum = 0
  const o = new Float64Array(dim)
  for (const s of states) {
    if (s.lse === -Infinity) continue
    const w = Math.exp(s.lse - max)
    sum += w
    for (let c = 0; c < dim; c++) o[c]! += w * s.o[c]!
  }
  for (let c = 0; c < dim; c++) o[c]! /= sum
  return { o, lse: max + Math.log(sum) }
}

/** Head counts and sizes shared by every attention entry point. */
export interface AttentionShape {
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  /** default 1/√headDim */
  readonly scale?: number
}

export const attentionScale = (shape: AttentionShape): number => shape.scale ?? 1 / Math.sqrt(shape.headDim)

/** KV head read by query head h (grouped-query attention). */
export const kvHeadOf = (shape: AttentionShape, h: number): number => Math.floor(h / (shape.heads / shape.kvHeads))

/** One case of the attention oracle (DESIGN.md): a tree of nodes holding KV, queries on nodes. */
export interface TreeAttentionCase extends AttentionShape {
  /** a node's parent has a smaller index; null marks a root */
  readonly nodes: ReadonlyArray<{
    readonly parent: number | null
    readonly length: number
    /** `[length][kvHeads][headDim]` */
    readonly k: ArrayLike<number>
    readonly v: ArrayLike<number>
  }>
  readonly queries: ReadonlyArray<{
    readonly node: number
    /** `[heads][headDim]` */
    readonly q: ArrayLike<number>
    /** tokens of the query's own node it may see (causal prefill); absent: all */
    readonly kvLimit?: number
  }>
}

/** Outputs in the GPU layout: out `[rows][heads][headDim]`, lse `[rows][heads]`. */
export interface AttentionOutput {
  readonly out: Float64Array
  readonly lse: Float64Array
}

const subarray = (a: ArrayLike<number>, begin: number, end: number): ArrayLike<number> =>
  ArrayBuffer.isView(a) ? (a as Float32Array).subarray(begin, end) : Array.prototype.slice.call(a, begin, end)

/**
 * The oracle's reference: each query attends every token on its path root..node
 * by one direct softmax over the concatenated path (no merging involved, so it
 * also checks the merge-based paths independently).
 */
export const referenceTreeAttention = (c: TreeAttentionCase): AttentionOutput => {
  const { heads, headDim: d } = c
  const scale = attentionScale(c)
  const out = new Float64Array(c.queries.length * heads * d)
  const lse = new Float64Array(c.queries.length * heads)
  c.queries.forEach((query, row) => {
    const path: Array<number> = []
    for (let n: number | null = query.node; n !== null; n = c.nodes[n]!.parent) path.unshift(n)
    for (let h = 0; h < heads; h++) {
      const kvh = kvHeadOf(c, h)
      const keys: Array<ArrayLike<number>> = []
      const values: Array<ArrayLike<number>> = []
      for (const n of path) {
        const node = c.nodes[n]!
        const visible = n === query.node ? Math.min(node.length, query.kvLimit ?? node.length) : node.length
        for (let t = 0; t < visible; t++) {
          const at = (t * c.kvHeads + kvh) * d
          keys.push(subarray(node.k, at, at + d))
          values.push(subarray(node.v, at, at + d))
        }
      }
      const state = attendSegment(subarray(query.q, h * d, (h + 1) * d), keys, values, scale)
      out.set(state.o, (row * heads + h) * d)
      lse[row * heads + h] = state.lse
    }
  })
  return { out, lse }
}

/** GPU-layout inputs: q `[rows][heads][headDim]`, pools `[numBlocks][blockSize][kvHeads][headDim]`. */
export interface PooledInputs {
  readonly q: Float32Array
  readonly kPool: Float32Array
  readonly vPool: Float32Array
}

/**
 * Reference over a LevelPlan: reads each node's KV from the pools through its
 * block table, attends every (level, node, entry) into its partial slot and
 * merges each sequence's slots as listed in seqPartials — the exact contract
 * the GPU path implements.
 */
export const referencePlanAttention = (plan: LevelPlan, shape: AttentionShape, inputs: PooledInputs): AttentionOutput => {
  const { heads, kvHeads, headDim: d } = shape
  const bs = plan.blockSize
  const scale = attentionScale(shape)
  const partials: Array<Array<AttentionState>> = Array.from({ length: plan.numPartials }, () => [])
  for (const level of plan.levels) {
    for (let n = 0; n < level.nodeIds.length; n++) {
      const length = level.length[n]!
      const table = level.blockIndices.subarray(level.blockIndptr[n]!, level.blockIndptr[n + 1]!)
      const start = level.startSlot[n]!
      const tokenAt = (pool: Float32Array, t: number, kvh: number): ArrayLike<number> => {
        const p = start + t
        const at = ((table[Math.floor(p / bs)]! * bs + (p % bs)) * kvHeads + kvh) * d
        return pool.subarray(at, at + d)
      }
      for (let k = level.queryIndptr[n]!; k < level.queryIndptr[n + 1]!; k++) {
        const seq = level.queryIndices[k]!
        const visible = Math.min(length, level.queryKvLimit?.[k] ?? length)
        const states: Array<AttentionState> = []
        for (let h = 0; h < heads; h++) {
          const kvh = kvHeadOf(shape, h)
          const keys = Array.from({ length: visible }, (_, t) => tokenAt(inputs.kPool, t, kvh))
          const values = Array.from({ length: visible }, (_, t) => tokenAt(inputs.vPool, t, kvh))
          const qAt = (seq * heads + h) * d
          states.push(attendSegment(inputs.q.subarray(qAt, qAt + d), keys, values, scale))
        }
        partials[level.queryOffset + k] = states
      }
    }
  }
  const out = new Float64Array(plan.numSequences * heads * d)
  const lse = new Float64Array(plan.numSequences * heads)
  for (let s = 0; s < plan.numSequences; s++) {
    const slots = plan.seqPartials.subarray(plan.seqPartialIndptr[s]!, plan.seqPartialIndptr[s + 1]!)
    for (let h = 0; h < heads; h++) {
      const merged = mergeStates(Array.from(slots, (slot) => partials[slot]![h]!), d)
      out.set(merged.o, (s * heads + h) * d)
      lse[s * heads + h] = merged.lse
    }
  }
  return { out, lse }
}
