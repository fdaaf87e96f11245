/**
 * Tile shapes of the attention kernels, chosen from the device's limits.
 * Workgroup memory is the binding constraint: SwiftShader offers 32 KiB (some
 * software adapters 16 KiB), an H100 48 KiB.
 */

/** Threads per workgroup of every attention kernel: fits compatibility-mode devices (128) too. */
export const ATTENTION_WORKGROUP = 128

/** Level (tile) kernel: `rows` stacked query rows × `keys` KV tokens per step. */
export interface LevelTile {
  readonly rows: number
  readonly keys: number
  readonly workgroupSize: number
}

/** Bytes of workgroup memory the level kernel declares for a tile. */
export const levelTileBytes = (headDim: number, rows: number, keys: number): number =>
  4 * (rows * headDim + 2 * keys * headDim + rows * keys + 4 * rows) + 32

/**
 * Prefers more stacked rows (each K/V tile loaded from the pool serves more
 * queries), then more keys per step (fewer barriers per token).
 */
export const findLevelTile = (headDim: number, limits: GPUSupportedLimits): LevelTile | undefined => {
  const workgroupSize = Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup)
  const budget = limits.maxComputeWorkgroupStorageSize
  for (const rows of [64, 32, 16, 8]) {
    // at most 16 vec4 accumulators per thread: more spills registers
    if ((rows * headDim) / 4 / workgroupSize > 16) continue
    for (const keys of [32, 16, 8]) {
      if (keys > workgroupSize) continue
      if (levelTileBytes(headDim, rows, keys) <= budget) return { rows, keys, workgroupSize }
    }
  }
  return undefined
}

export const chooseLevelTile = (headDim: number, limits: GPUSupportedLimits): LevelTile => {
  const tile = findLevelTile(headDim, limits)
  if (tile === undefined) {
    throw new Error(`no level-attention tile fits ${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory at head dim ${headDim}`)
  }
  return tile
}

/**
 * Decode kernel: the rows of one sequence's KV group (`groupSize` heads) over
 * one chunk. `lanes` threads share a key (each holds headDim/4/lanes vec4s), so
 * a key row is read as one coalesced run; `keySlots` keys are in flight per
 * thread group, each thread takes `tokensPerThread` of them per barrier pair.
 */
export interface DecodeTile {
  readonly lanes: number
  readonly keySlots: number
  readonly tokensPerThread: number
  readonly workgroupSize: number
}

export const decodeTileBytes = (headDim: number, t: DecodeTile): number =>
  4 * t.tokensPerThread * t.workgroupSize + 4 * (t.workgroupSize / t.lanes) * 2 + t.workgroupSize * (headDim / t.lanes) * 4

export const findDecodeTile = (headDim: number, groupSize: number, limits: GPUSupportedLimits): DecodeTile | undefined => {
  const workgroupSize = Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup)
  const vec4s = headDim / 4
  for (let lanes = Math.min(8, vec4s); lanes >= 1; lanes--) {
    if (vec4s % lanes !== 0 || groupSize * lanes > workgroupSize) continue
    const keySlots = Math.floor(workgroupSize / (groupSize * lanes))
    const tile = { lanes, keySlots, tokensPerThread: Math.max(1, Math.ceil(32 / keySlots)), workgroupSize }
    if (decodeTileBytes(headDim, tile) <= limits.maxComputeWorkgroupStorageSize) return tile
  }
  return undefined
}

export const chooseDecodeTile = (headDim: number, groupSize: number, limits: GPUSupportedLimits): DecodeTile => {
  const tile = findDecodeTile(headDim, groupSize, limits)
  if (tile === undefined) throw new Error(`no decode-attention tile for head dim ${headDim} with ${groupSize} query heads per KV head`)
  return tile
}

/**
 * The most query heads per KV head the decode kernel takes at `headDim` on a
 * device with these limits (0: none), so that a shape can be refused, naming
 * the limit, before any kernel is built. A smaller group never needs more
 * lanes or memory than a larger one, so every group up to this one fits.
 */
export const maxDecodeGroup = (headDim: number, limits: GPUSupportedLimits): number => {
  for (let group = Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup); group >= 1; group--) {
    if (findDecodeTile(headDim, group, limits) !== undefined) return group
  }
  return 0
}
