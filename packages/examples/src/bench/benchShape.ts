/**
 * The attention layer shape a benchmark runs, and the checks that turn a bad
 * one into a readable message before anything is measured.
 */
import { chooseDecodeTile, chooseLevelTile } from "@canopy/kernels"

export interface BenchShape {
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  /** tokens per KV block */
  readonly blockSize: number
}

/** What is wrong with `shape` (empty when nothing); with `limits`, also whether the kernels' tiles fit the device. */
export const shapeProblems = (shape: BenchShape, limits?: GPUSupportedLimits): ReadonlyArray<string> => {
  const { heads, kvHeads, headDim, blockSize } = shape
  const problems: Array<string> = []
  if (!(Number.isSafeInteger(kvHeads) && kvHeads >= 1)) problems.push(`--kv-heads must be a positive integer, got ${kvHeads}`)
  else if (!(Number.isSafeInteger(heads) && heads >= 1 && heads % kvHeads === 0)) {
    problems.push(`--heads (${heads}) must be a positive multiple of --kv-heads (${kvHeads})`)
  }
  // the kernels read q, k and v as vec4s split over up to 8 lanes
  if (!(Number.isSafeInteger(headDim) && headDim >= 8 && headDim % 8 === 0)) {
    problems.push(`--head-dim must be a positive multiple of 8, got ${headDim}`)
  }
  if (!(Number.isSafeInteger(blockSize) && blockSize >= 1)) problems.push(`--block-size must be a positive integer, got ${blockSize}`)
  if (problems.length > 0 || limits === undefined) return problems
  try {
    chooseLevelTile(headDim, limits)
    chooseDecodeTile(headDim, heads / kvHeads, limits)
  } catch (e) {
    problems.push(`unsupported on this adapter: ${e instanceof Error ? e.message : String(e)}`)
  }
  return problems
}
