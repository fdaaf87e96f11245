/**
 * The attention oracle's input: one JSON case (see DESIGN.md, "The attention
 * oracle"). Parsing checks everything a wrong answer could hide behind — array
 * lengths, parent order, head ratios, non-finite numbers — and names the first
 * problem it finds.
 */
import { type KvDtype, roundToF16 } from "@canopy/kernels"
import { Data } from "effect"

export type AttentionMethod = "hydragen" | "baseline" | "reference"

export interface CaseNode {
  readonly parent: number | null
  readonly length: number
  readonly k: Float64Array
  readonly v: Float64Array
}

export interface CaseQuery {
  readonly node: number
  readonly q: Float64Array
}

export interface AttentionCase {
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  readonly method: AttentionMethod
  /**
   * The KV cache's element type the case is answered for (default "f32"). With
   * "f16" every K and V value is rounded as an f16 cache stores it (to f32, then
   * to the nearest f16, ties to even) before any method sees it, so the
   * reference attends exactly the values the GPU pools hold.
   */
  readonly kvDtype: KvDtype
  readonly nodes: ReadonlyArray<CaseNode>
  readonly queries: ReadonlyArray<CaseQuery>
}

/** What was wrong with a case, with the JSON path of the offending value. */
export class InvalidAttentionCase extends Data.TaggedError("InvalidAttentionCase")<{
  readonly path: string
  readonly problem: string
}> {
  override get message(): string {
    return `${this.path}: ${this.problem}`
  }
}

const fail = (path: string, problem: string): never => {
  throw new InvalidAttentionCase({ path, problem })
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

/**
 * A value as a message shows it. JSON.parse reads a literal beyond the f64
 * range (1e999) as ±Infinity, which JSON.stringify would print as null.
 */
const shown = (x: unknown): string =>
  typeof x === "number" && !Number.isFinite(x)
    ? Number.isNaN(x) ? "NaN" : `a number beyond the f64 range (JSON.parse reads it as ${x})`
    : JSON.stringify(x) ?? String(x)

const positiveInt = (value: unknown, path: string, max: number): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    fail(path, `must be an integer from 1 to ${max}, got ${shown(value)}`)
  }
  return value as number
}

/** The largest finite f32: the GPU path holds every input in f32, where a larger magnitude is Infinity. */
export const F32_MAX = 3.4028234663852886e38

/**
 * Largest |score| the GPU path takes. The kernels stand for −∞ with −1e30 and
 * read a running max below −5e29 as "no token yet" (a row with only such
 * scores comes out empty: out 0, lse null), so scores stay well clear of it.
 */
export const MAX_SCORE = 1e29

/** Largest max|v| × tokens on a path: an f32 accumulator sums up to that many weighted values before it normalizes. */
export const MAX_VALUE_SUM = 1e38

const finiteArray = (value: unknown, path: string, expected: number): Float64Array => {
  if (!Array.isArray(value)) return fail(path, `must be an array of ${expected} numbers`)
  if (value.length !== expected) fail(path, `must hold ${expected} numbers, holds ${value.length}`)
  const out = new Float64Array(expected)
  for (let i = 0; i < expected; i++) {
    const x = value[i]
    if (typeof x !== "number" || !Number.isFinite(x)) fail(`${path}[${i}]`, `must be a finite number, got ${shown(x)}`)
    if (Math.abs(x as number) > F32_MAX) {
      fail(`${path}[${i}]`, `must be within the f32 range the GPU path computes in (magnitude at most ${F32_MAX}), got ${x as number}`)
    }
    out[i] = x as number
  }
  return out
}

/**
 * K or V values as a cache of `kvDtype` holds them. An f16 cache rounds
 * 65520 and beyond to infinity, so such a value is refused rather than
 * attended as ±∞.
 */
const kvArray = (value: unknown, path: string, expected: number, kvDtype: KvDtype): Float64Array => {
  const out = finiteArray(value, path, expected)
  if (kvDtype === "f32") return out
  for (let i = 0; i < expected; i++) {
    const rounded = roundToF16(out[i]!)
    if (!Number.isFinite(rounded)) {
      fail(`${path}[${i}]`, `must be within the range of an f16 KV cache (it rounds to infinity from magnitude 65520; the largest f16 is 65504), got ${out[i]!}`)
    }
    out[i] = rounded
  }
  return out
}

const magnitude = (x: number): string => x.toPrecision(3)

/** Largest |x| of each of `rows` runs of `width` in `a`, run r at `(r·stride + offset)·width`. */
const rowMax = (a: Float64Array, width: number, count: number, stride: number, offset: number): number => {
  let m = 0
  for (let r = 0; r < count; r++) {
    const at = (r * stride + offset) * width
    for (let i = 0; i < width; i++) {
      const x = Math.abs(a[at + i]!)
      if (x > m) m = x
    }
  }
  return m
}

/**
 * Refuses a case whose scores or outputs the GPU path would overflow, though
 * every input is in range. Per KV head, the largest |k| and |v| over each
 * query's path (carried down the tree: a parent comes before its children)
 * bound its scores, |q·k|/√d ≤ √d·max|q|·max|k|, and what its f32 accumulator
 * sums, ≤ tokens·max|v|.
 */
const checkMagnitudes = (heads: number, kvHeads: number, d: number, nodes: ReadonlyArray<CaseNode>, queries: ReadonlyArray<CaseQuery>): void => {
  const group = heads / kvHeads
  // per node and KV head: the largest |k| and |v| on its path, and the node holding them
  const kMax = new Float64Array(nodes.length * kvHeads)
  const kAt = new Int32Array(nodes.length * kvHeads)
  const vMax = new Float64Array(nodes.length * kvHeads)
  const vAt = new Int32Array(nodes.length * kvHeads)
  const tokens = new Float64Array(nodes.length)
  for (let n = 0; n < nodes.length; n++) {
    const node = nodes[n]!
    const p = node.parent
    tokens[n] = node.length + (p === null ? 0 : tokens[p]!)
    for (let h = 0; h < kvHeads; h++) {
      const at = n * kvHeads + h
      const k = rowMax(node.k, d, node.length, kvHeads, h)
      const v = rowMax(node.v, d, node.length, kvHeads, h)
      const fromK = p !== null && kMax[p * kvHeads + h]! > k
      const fromV = p !== null && vMax[p * kvHeads + h]! > v
      kMax[at] = fromK ? kMax[p * kvHeads + h]! : k
      kAt[at] = fromK ? kAt[p * kvHeads + h]! : n
      vMax[at] = fromV ? vMax[p * kvHeads + h]! : v
      vAt[at] = fromV ? vAt[p * kvHeads + h]! : n
    }
  }
  const rootD = Math.sqrt(d)
  for (let s = 0; s < queries.length; s++) {
    const { node, q } = queries[s]!
    for (let h = 0; h < kvHeads; h++) {
      const at = node * kvHeads + h
      const qMax = rowMax(q, d, group, 1, h * group)
      const score = rootD * qMax * kMax[at]!
      if (score > MAX_SCORE) {
        fail(
          `$.queries[${s}].q`,
          `its scores against $.nodes[${kAt[at]!}].k (KV head ${h}) may reach √headDim·max|q|·max|k| = ` +
            `${magnitude(rootD)}·${magnitude(qMax)}·${magnitude(kMax[at]!)} = ${magnitude(score)}; the GPU path takes scores up to ${MAX_SCORE}`
        )
      }
      const sum = tokens[node]! * vMax[at]!
      if (sum > MAX_VALUE_SUM) {
        fail(
          `$.nodes[${vAt[at]!}].v`,
          `$.queries[${s}] sums these values (KV head ${h}) over the ${tokens[node]!} tokens of its path: ` +
            `tokens·max|v| = ${tokens[node]!}·${magnitude(vMax[at]!)} = ${magnitude(sum)}; the GPU path's f32 sums take up to ${MAX_VALUE_SUM}`
        )
      }
    }
  }
}

/** Limits that keep one case to what a single GPU call can hold. */
const MAX_DIM = 1024
const MAX_HEADS = 1024
const MAX_TOKENS = 1 << 22

/** Validates a parsed JSON value as an attention case; throws InvalidAttentionCase. */
export const parseAttentionCase = (input: unknown): AttentionCase => {
  if (!isRecord(input)) return fail("$", "must be a JSON object")
  const heads = positiveInt(input["heads"], "$.heads", MAX_HEADS)
  const kvHeads = positiveInt(input["kvHeads"], "$.kvHeads", MAX_HEADS)
  const headDim = positiveInt(input["headDim"], "$.headDim", MAX_DIM)
  if (heads % kvHeads !== 0) fail("$.kvHeads", `heads (${heads}) must be a multiple of kvHeads (${kvHeads})`)
  const method = input["method"] ?? "hydragen"
  if (method !== "hydragen" && method !== "baseline" && method !== "reference") {
    fail("$.method", `must be "hydragen", "baseline" or "reference", got ${JSON.stringify(method)}`)
  }
  const kvDtype = input["kvDtype"] ?? "f32"
  if (kvDtype !== "f16" && kvDtype !== "f32") fail("$.kvDtype", `must be "f16" or "f32", got ${shown(kvDtype)}`)
  const rawNodes = input["nodes"]
  if (!Array.isArray(rawNodes)) return fail("$.nodes", "must be an array")
  let totalTokens = 0
  const nodes = rawNodes.map((raw: unknown, i): CaseNode => {
    const path = `$.nodes[${i}]`
    if (!isRecord(raw)) return fail(path, "must be an object")
    const parent = raw["parent"] ?? null
    if (parent !== null && (typeof parent !== "number" || !Number.isInteger(parent) || parent < 0 || parent >= i)) {
      fail(`${path}.parent`, `must be null or the index of an earlier node (0..${i - 1}), got ${JSON.stringify(parent)}`)
    }
    const length = raw["length"]
    if (typeof length !== "number" || !Number.isInteger(length) || length < 0) {
      fail(`${path}.length`, `must be a non-negative integer, got ${JSON.stringify(length)}`)
    }
    totalTokens += length as number
    if (totalTokens > MAX_TOKENS) fail(`${path}.length`, `the case holds more than ${MAX_TOKENS} tokens`)
    const size = (length as number) * kvHeads * headDim
    return {
      parent: parent as number | null,
      length: length as number,
      k: kvArray(raw["k"], `${path}.k`, size, kvDtype as KvDtype),
      v: kvArray(raw["v"], `${path}.v`, size, kvDtype as KvDtype)
    }
  })
  const rawQueries = input["queries"]
  if (!Array.isArray(rawQueries)) return fail("$.queries", "must be an array")
  const queries = rawQueries.map((raw: unknown, i): CaseQuery => {
    const path = `$.queries[${i}]`
    if (!isRecord(raw)) return fail(path, "must be an object")
    const node = raw["node"]
    if (typeof node !== "number" || !Number.isInteger(node) || node < 0 || node >= nodes.length) {
      fail(`${path}.node`, `must be the index of a node (0..${nodes.length - 1}), got ${JSON.stringify(node)}`)
    }
    return { node: node as number, q: finiteArray(raw["q"], `${path}.q`, heads * headDim) }
  })
  checkMagnitudes(heads, kvHeads, headDim, nodes, queries)
  return { heads, kvHeads, headDim, method: method as AttentionMethod, kvDtype: kvDtype as KvDtype, nodes, queries }
}

/** The oracle's output: lse −∞ (a path with no tokens) is written as null. */
export interface AttentionAnswer {
  readonly out: ReadonlyArray<ReadonlyArray<number>>
  readonly lse: ReadonlyArray<ReadonlyArray<number | null>>
  readonly adapter: string
}

export const formatAnswer = (
  outs: ReadonlyArray<ArrayLike<number>>,
  lses: ReadonlyArray<ArrayLike<number>>,
  adapter: string
): AttentionAnswer => ({
  out: outs.map((o) => Array.from(o)),
  lse: lses.map((l) => Array.from(l, (x) => (Number.isFinite(x) ? x : null))),
  adapter
})
