/**
 * The attention oracle's input: one JSON case (see DESIGN.md, "The attention
 * oracle"). Parsing checks everything a wrong answer could hide behind — array
 * lengths, parent order, head ratios, non-finite numbers — and names the first
 * problem it finds.
 */
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

const positiveInt = (value: unknown, path: string, max: number): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    fail(path, `must be an integer from 1 to ${max}, got ${JSON.stringify(value)}`)
  }
  return value as number
}

const finiteArray = (value: unknown, path: string, expected: number): Float64Array => {
  if (!Array.isArray(value)) return fail(path, `must be an array of ${expected} numbers`)
  if (value.length !== expected) fail(path, `must hold ${expected} numbers, holds ${value.length}`)
  const out = new Float64Array(expected)
  for (let i = 0; i < expected; i++) {
    const x = value[i]
    if (typeof x !== "number" || !Number.isFinite(x)) fail(`${path}[${i}]`, `must be a finite number, got ${JSON.stringify(x)}`)
    out[i] = x as number
  }
  return out
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
      k: finiteArray(raw["k"], `${path}.k`, size),
      v: finiteArray(raw["v"], `${path}.v`, size)
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
  return { heads, kvHeads, headDim, method: method as AttentionMethod, nodes, queries }
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
