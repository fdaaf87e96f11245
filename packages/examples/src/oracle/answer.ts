/**
 * The attention oracle's work: parse a case, answer it with the chosen method.
 */
import {
  type AttentionKernels, type GpuHandle, createPagedDecode, createTreeAttention, describeAdapter, layoutCase, openGpu,
  referenceTreeAttention, runTreeAttention, type TreeAttentionCase
} from "@canopy/kernels"
import { type AttentionCase, type AttentionAnswer, formatAnswer, InvalidAttentionCase, parseAttentionCase } from "./AttentionCase.ts"

/** Parses the oracle's standard input; throws InvalidAttentionCase. */
export const parseOracleInput = (text: string): AttentionCase => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new InvalidAttentionCase({ path: "$", problem: `standard input is not JSON (${e instanceof Error ? e.message : e})` })
  }
  return parseAttentionCase(json)
}

/** Kernels take a head dim that is a multiple of 8 up to 128 (their compiled tiles). */
const checkGpuShape = (c: AttentionCase): void => {
  if (c.headDim % 8 !== 0 || c.headDim > 128) {
    throw new InvalidAttentionCase({
      path: "$.headDim",
      problem: `the GPU kernels take a multiple of 8 up to 128, got ${c.headDim} (method "reference" takes any)`
    })
  }
}

/** Rows per output array: out `[heads·headDim]`, lse `[heads]`. */
const split = (flat: ArrayLike<number>, rows: number, width: number): Array<ArrayLike<number>> =>
  Array.from({ length: rows }, (_, r) => Array.prototype.slice.call(flat, r * width, (r + 1) * width) as Array<number>)

/**
 * Answers a case with its method: the GPU path (hydragen or baseline) or the
 * float64 reference. Opens (and closes) a device unless one is given.
 */
export const answerCase = async (c: AttentionCase, shared?: GpuHandle): Promise<AttentionAnswer> => {
  const tree: TreeAttentionCase = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, nodes: c.nodes, queries: c.queries }
  const rows = c.queries.length
  if (c.method === "reference") {
    const r = referenceTreeAttention(tree)
    return formatAnswer(split(r.out, rows, c.heads * c.headDim), split(r.lse, rows, c.heads), "cpu float64 reference")
  }
  checkGpuShape(c)
  const gpu = shared ?? (await openGpu())
  let kernels: AttentionKernels | undefined
  try {
    const blockSize = 16
    const shape = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, blockSize }
    kernels = c.method === "baseline" ? await createPagedDecode(gpu.device, shape) : await createTreeAttention(gpu.device, shape)
    const { plan, inputs } = layoutCase(tree, blockSize)
    const r = await runTreeAttention(gpu.device, kernels, plan, inputs)
    return formatAnswer(split(r.out, rows, c.heads * c.headDim), split(r.lse, rows, c.heads), describeAdapter(gpu.adapter))
  } finally {
    kernels?.destroy()
    if (shared === undefined) gpu.close()
  }
}
