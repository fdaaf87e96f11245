/**
 * Tile shapes of the attention kernels, chosen from the device's limits.
 * Workgroup memory is the binding constraint: SwiftShader offers 32 KiB (some
 * software adapters 16 KiB), an H100 48 KiB.
 */

/** Threads per workgroup of every attention kernel: fits compatibility-mode devices (128) too. */
export const ATTENTION_WORKGROUP = 128

/**
 * How the level kernel spreads a tile over its threads (levelAttention.wgsl.ts):
 *
 *   "stacked"  the tile's queries in workgroup memory; a thread scores one key
 *              against several rows, one thread per row runs the online
 *              softmax, the accumulators are split over all threads
 *   "flash2"   FlashAttention-2's shape: `workgroupSize / rows` lanes per row,
 *              each holding the row's q and o on its slice of the head dim in
 *              registers, with the row's running max and sum; the softmax
 *              rescaling is per row, in registers
 *   "matrix"   one subgroup per tile, Q·Kᵀ and P·V on the device's matrix
 *              units (levelAttentionMatrix.wgsl.ts): its tile follows from
 *              the units (matrixLevelTile), for an f16 KV cache only
 */
export type LevelVariant = "stacked" | "flash2" | "matrix"

/** The variants every device runs, chosen from the limits alone (the matrix tile also needs the device's matrix units). */
export const LEVEL_VARIANTS: ReadonlyArray<LevelVariant> = ["stacked", "flash2"]

/**
 * The variant the level kernel runs unless told otherwise (where one of its
 * tiles fits the device; stacked where none does): flash2, 1.2–1.8× faster
 * than stacked in Hydragen's time on SwiftShader over `canopy bench
 * attention`'s default sweep (at batch 8 some rounds' ranges reach 1×).
 */
export const DEFAULT_LEVEL_VARIANT: LevelVariant = "flash2"

/** Level (tile) kernel: `rows` stacked query rows × `keys` KV tokens per step. */
export interface LevelTile {
  readonly rows: number
  readonly keys: number
  readonly workgroupSize: number
  /** how the kernel spreads the tile over its threads; absent: "stacked" */
  readonly variant?: LevelVariant
}

export const levelVariantOf = (tile: LevelTile): LevelVariant => tile.variant ?? "stacked"

/** Bytes of workgroup memory the level kernel declares for a tile. */
export const levelTileBytes = (headDim: number, rows: number, keys: number): number =>
  4 * (rows * headDim + 2 * keys * headDim + rows * keys + 4 * rows) + 32

/**
 * The tile of `variant` (default: DEFAULT_LEVEL_VARIANT's, else stacked's)
 * the level kernel runs without tuning. Stacked prefers more stacked rows
 * (each K/V tile loaded from the pool serves more queries), then more keys
 * per step (fewer barriers per token); flash2 takes the first of
 * flash2LevelTiles.
 */
export const findLevelTile = (headDim: number, limits: GPUSupportedLimits, variant?: LevelVariant): LevelTile | undefined => {
  if (variant === undefined) return findLevelTile(headDim, limits, DEFAULT_LEVEL_VARIANT) ?? findLevelTile(headDim, limits, "stacked")
  if (variant === "flash2") return flash2LevelTiles(headDim, limits)[0]
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

export const chooseLevelTile = (headDim: number, limits: GPUSupportedLimits, variant?: LevelVariant): LevelTile => {
  const tile = findLevelTile(headDim, limits, variant)
  if (tile === undefined) {
    throw new Error(`no ${variant === undefined ? "" : `${variant} `}level-attention tile fits ${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory at head dim ${headDim}`)
  }
  return tile
}

/**
 * Whether the level kernel can run `tile` at `headDim` on a device with these
 * limits: the tile findLevelTile picks for its variant, or (a tuner's pick)
 * another within the same bounds.
 */
export const levelTileFits = (headDim: number, tile: LevelTile, limits: GPUSupportedLimits): boolean => {
  // the matrix tile needs the device's matrix units, which the limits do not tell (matrixLevelProblem)
  if (levelVariantOf(tile) === "matrix") return false
  if (levelVariantOf(tile) === "flash2") {
    return flash2LevelTiles(headDim, limits).some((t) => t.rows === tile.rows && t.keys === tile.keys && t.workgroupSize === tile.workgroupSize)
  }
  const { rows, keys, workgroupSize } = tile
  // the stacked kernel runs a thread per row and WG / keys threads per key
  return Number.isInteger(rows) && rows >= 1 && rows <= workgroupSize && Number.isInteger(keys) && keys >= 1 &&
    workgroupSize === Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup) && workgroupSize % keys === 0 &&
    (rows * headDim) / 4 / workgroupSize <= 16 && levelTileBytes(headDim, rows, keys) <= limits.maxComputeWorkgroupStorageSize
}

/**
 * Every level tile the device allows at `headDim`, as the tuner measures them:
 * the stacked tiles of findLevelTile's search that fit and every flash2 tile,
 * the default variant's first, so that findLevelTile's pick (the choice
 * without tuning) leads.
 */
export const levelTileCandidates = (headDim: number, limits: GPUSupportedLimits): ReadonlyArray<LevelTile> => {
  const workgroupSize = Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup)
  const stacked = [64, 32, 16, 8].flatMap((rows) => [32, 16, 8].map((keys): LevelTile => ({ rows, keys, workgroupSize })))
    .filter((t) => levelTileFits(headDim, t, limits))
  const flash2 = flash2LevelTiles(headDim, limits)
  return DEFAULT_LEVEL_VARIANT === "flash2" ? [...flash2, ...stacked] : [...stacked, ...flash2]
}

/** Flash2 tiles: threads that share one query row (each owns a slice of its head dim). */
export const flash2Lanes = (tile: LevelTile): number => tile.workgroupSize / tile.rows

/** Flash2: vec4s of the head dim a lane owns (its q and o in registers); the last lanes may own one fewer. */
export const flash2Slice = (headDim: number, tile: LevelTile): number => Math.ceil(headDim / 4 / flash2Lanes(tile))

/**
 * Bytes of workgroup memory the flash2 level kernel declares: the K and V
 * tiles and, with several lanes per row, their partial scores.
 */
export const flash2TileBytes = (headDim: number, tile: LevelTile): number =>
  4 * (2 * tile.keys * headDim + (flash2Lanes(tile) > 1 ? tile.keys * tile.workgroupSize : 0)) + 32

/**
 * Every flash2 tile that fits the device at `headDim`, more rows first (a K/V
 * tile serves more queries, fewer lanes per row repeat the exponentials),
 * then more keys (fewer barriers per token). Rows divide the workgroup; each
 * lane owns at least one and at most 16 vec4s of the head dim (its q and o:
 * more spills registers).
 */
export const flash2LevelTiles = (headDim: number, limits: GPUSupportedLimits): ReadonlyArray<LevelTile> => {
  const workgroupSize = Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup)
  const vec4s = headDim / 4
  const tiles: Array<LevelTile> = []
  for (const rows of [128, 64, 32, 16, 8]) {
    if (rows > workgroupSize || workgroupSize % rows !== 0) continue
    const lanes = workgroupSize / rows
    if (lanes > vec4s || Math.ceil(vec4s / lanes) > 16) continue
    for (const keys of [64, 32, 16, 8]) {
      const tile: LevelTile = { rows, keys, workgroupSize, variant: "flash2" }
      if (flash2TileBytes(headDim, tile) <= limits.maxComputeWorkgroupStorageSize) tiles.push(tile)
    }
  }
  return tiles
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
