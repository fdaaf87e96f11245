/**
 * Tuning the level-attention tile: the tiles the device allows at the shape's
 * head dim (levelTileCandidates: stacked and flash2; the matrix tile too where
 * the device has matrix units, the KV cache is f16 and the probe
 * `engine-level-attention` passed on this adapter), each built into a whole
 * tree attention (level, decode and merge kernels) as the engine builds it,
 * checked on a small tree against the float64 reference, then timed on one
 * decoding step of a representative tree: a shared prompt attended by every
 * sequence (the level kernel's work) under which each sequence has a suffix of
 * its own (the decode kernel's), its q, K and V zeros (values do not change
 * how long attention takes).
 */
import { mulberry32 } from "@canopy/tree-cache"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { createStorageBuffer } from "../gpu/resources.ts"
import { kvElementBytes, kvStorageFor, roundKv, type KvDtype } from "../attention/kvStorage.ts"
import { layoutCase } from "../attention/layoutCase.ts"
import { type AttentionOutput, referenceTreeAttention, type TreeAttentionCase } from "../attention/reference.ts"
import { runTreeAttention } from "../attention/runAttention.ts"
import { chooseLevelTile, levelTileCandidates, levelVariantOf, type LevelTile } from "../attention/tiling.ts"
import { type AttentionBuffers, createTreeAttention, type TreeAttention } from "../attention/treeAttention.ts"
import { fittingRowMatrices, matrixLevelTile } from "../attention/levelAttentionMatrix.wgsl.ts"
import { deviceMatrixUnits, type MatrixUnits } from "../subgroupMatrix/matrixOps.ts"
import { timeGpu } from "../gpu/timing.ts"
import { canopyVersion, defaultTuneCache, type TuneCache } from "./cache.ts"
import { ENGINE_LEVEL_PROBE, ENGINE_LEVEL_PROBE_HEAD_DIM, matrixProbeStatus } from "./matrixProbe.ts"
import { type CandidateTrial, tune, type TuneCandidate, type TuneChoice, type TuneOptions } from "./tuner.ts"

export interface LevelTileShape {
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  /** default "f32" */
  readonly kvDtype?: KvDtype
  /** what the kernels should assume the device can do (default: its own record) */
  readonly capabilities?: GpuCapabilities
}

/** The shared prompt and the sequences under it in the timed step. */
export interface LevelTileWorkload {
  readonly sequences: number
  readonly sharedTokens: number
  readonly suffixTokens: number
}

/**
 * The timed step: on a GPU a step of a sampling run, a millisecond or less;
 * on a software adapter the same tree cut down, tens of milliseconds there.
 */
export const LEVEL_TILE_WORKLOADS: { readonly hardware: LevelTileWorkload; readonly software: LevelTileWorkload } = {
  hardware: { sequences: 128, sharedTokens: 1024, suffixTokens: 16 },
  software: { sequences: 16, sharedTokens: 256, suffixTokens: 16 }
}

export interface LevelTileTuneOptions extends TuneOptions {
  /** the tiles to choose among, the default first (default: levelTileCandidates on the device) */
  readonly tiles?: ReadonlyArray<LevelTile>
  /** the timed step (default: LEVEL_TILE_WORKLOADS for the adapter's kind) */
  readonly workload?: LevelTileWorkload
  /** the matrix units a matrix tile is written for (default: the device's builtins, where it has them) */
  readonly matrixUnits?: MatrixUnits | string
}

/** A tile's name in reports and the tuning cache: `64x32` is 64 rows by 32 keys, `flash2 64x32` the flash2 kernel's. */
export const levelTileName = (tile: LevelTile): string =>
  `${levelVariantOf(tile) === "stacked" ? "" : `${levelVariantOf(tile)} `}${tile.rows}x${tile.keys}`

/**
 * Tiles a software adapter tries: the first few of each kernel (its preferred
 * ones). It compiles a tile in seconds, so trying every one would add minutes
 * over the first runs of every command, for a ranking of an emulated GPU.
 */
const SOFTWARE_TILES_PER_VARIANT = 2

const defaultTiles = (headDim: number, limits: GPUSupportedLimits, software: boolean): ReadonlyArray<LevelTile> => {
  const all = levelTileCandidates(headDim, limits)
  if (!software) return all
  const taken = new Map<string, number>()
  return all.filter((tile) => {
    const variant = levelVariantOf(tile)
    const n = taken.get(variant) ?? 0
    taken.set(variant, n + 1)
    return n < SOFTWARE_TILES_PER_VARIANT
  })
}

/**
 * The matrix tiles (MATRIX_LEVEL_ROW_MATRICES) that can run `shape` here,
 * where their probe passed on this adapter for this version (matrixProbe.ts)
 * — never one that no isolated process built first — or none.
 */
export const matrixLevelCandidates = (
  device: GPUDevice, shape: LevelTileShape, cache: TuneCache | undefined, version: string, units: MatrixUnits | string = deviceMatrixUnits(device)
): ReadonlyArray<LevelTile> => {
  if (typeof units === "string") return []
  const kv = kvStorageFor(shape.kvDtype ?? "f32", shape.capabilities ?? capabilitiesOf(device))
  if (matrixProbeStatus(cache, device, version, ENGINE_LEVEL_PROBE) !== "ok") return []
  // only tiles the probe built: those that fit at its head dim too
  return fittingRowMatrices({ kv, units }, [shape.headDim, ENGINE_LEVEL_PROBE_HEAD_DIM], device.limits).map((r) => matrixLevelTile(units, r))
}

/** Every attention built here uses the engine's block size and chunking, so a tile is measured as the engine runs it. */
const BLOCK_SIZE = 16

/** The f32 tolerance of the attention kernels (design.md, "Measuring"); f16 KV is compared on the same rounded values. */
const TOLERANCE = 1e-4

interface TreeShape {
  readonly nodes: ReadonlyArray<{ readonly parent: number | null; readonly length: number }>
  readonly queries: ReadonlyArray<number>
}

/** Values in [-1, 1) for the tree's nodes and queries, K and V rounded to what a pool of `kvDtype` holds. */
const fillCase = (shape: LevelTileShape, tree: TreeShape, seed: number): TreeAttentionCase => {
  const { heads, kvHeads, headDim } = shape
  const next = mulberry32(seed)
  const values = (n: number) => Float32Array.from({ length: n }, () => next() * 2 - 1)
  const kv = (n: number) => roundKv(values(n), shape.kvDtype ?? "f32")
  return {
    heads, kvHeads, headDim,
    nodes: tree.nodes.map((n) => ({ ...n, k: kv(n.length * kvHeads * headDim), v: kv(n.length * kvHeads * headDim) })),
    queries: tree.queries.map((node) => ({ node, q: values(heads * headDim) }))
  }
}

/**
 * The check's tree: a root and a child both shared (two levels of the level
 * kernel, lengths that are not multiples of any tile's keys or the block size),
 * a query on the inner node, and leaves of their own under each (the decode
 * kernel). Enough sequences that the largest tile's rows are filled once and
 * then partly, so full and ragged query tiles are both checked.
 */
const checkTree = (group: number, tiles: ReadonlyArray<LevelTile>): TreeShape => {
  const rows = Math.max(...tiles.map((t) => t.rows))
  const sequences = Math.max(4, Math.ceil((1.5 * rows) / group))
  const leaves = Array.from({ length: sequences }, (_, s) => ({ parent: s % 2, length: 3 }))
  return { nodes: [{ parent: null, length: 37 }, { parent: 0, length: 21 }, ...leaves], queries: [1, ...leaves.map((_, s) => 2 + s)] }
}

const stepTree = (w: LevelTileWorkload): TreeShape => ({
  nodes: [{ parent: null, length: w.sharedTokens }, ...Array.from({ length: w.sequences }, () => ({ parent: 0, length: w.suffixTokens }))],
  queries: Array.from({ length: w.sequences }, (_, s) => 1 + s)
})

/** The first (row, head) where the GPU's result is off the reference by more than the tolerance, or undefined. */
export const attentionMismatch = (
  gpu: { readonly out: ArrayLike<number>; readonly lse: ArrayLike<number> }, ref: AttentionOutput, headDim: number, tolerance = TOLERANCE
): string | undefined => {
  for (let at = 0; at < ref.lse.length; at++) {
    let diff = 0
    let size = 1e-6
    for (let i = at * headDim; i < (at + 1) * headDim; i++) {
      diff = Math.max(diff, Math.abs(gpu.out[i]! - ref.out[i]!))
      size = Math.max(size, Math.abs(ref.out[i]!))
    }
    // NaN (an element never written) fails these comparisons too
    if (!(diff / size <= tolerance)) return `out of (row, head) ${at}: relative error ${(diff / size).toExponential(2)}`
    const g = gpu.lse[at]!
    const r = ref.lse[at]!
    const lseOk = r === -Infinity ? g === -Infinity : Math.abs(g - r) <= tolerance * Math.max(1, Math.abs(r))
    if (!lseOk) return `lse of (row, head) ${at}: ${g}, the reference ${r}`
  }
  return undefined
}

/** The timed step's plan and buffers, shared by every candidate. */
interface StepInputs {
  readonly plan: ReturnType<typeof layoutCase>["plan"]
  readonly buffers: AttentionBuffers
  destroy(): void
}

/** The step's tree laid out, its q and pools zeros: values do not change how long attention takes. */
const stepInputs = (device: GPUDevice, shape: LevelTileShape, workload: LevelTileWorkload): StepInputs => {
  const { heads, kvHeads, headDim } = shape
  const tree = stepTree(workload)
  const kv = new Float32Array(Math.max(workload.sharedTokens, workload.suffixTokens) * kvHeads * headDim)
  const q = new Float32Array(heads * headDim)
  const { plan, inputs } = layoutCase({
    heads, kvHeads, headDim,
    nodes: tree.nodes.map((n) => ({ ...n, k: kv, v: kv })),
    queries: tree.queries.map((node) => ({ node, q }))
  }, BLOCK_SIZE)
  const poolBytes = inputs.kPool.length * kvElementBytes(shape.kvDtype ?? "f32")
  const rows = plan.numSequences * heads
  const created: Array<GPUBuffer> = []
  const buffer = (label: string, bytes: number): GPUBuffer => {
    const b = createStorageBuffer(device, label, bytes)
    created.push(b)
    return b
  }
  try {
    const buffers: AttentionBuffers = {
      q: buffer("tune q", rows * headDim * 4),
      kPool: buffer("tune k pool", poolBytes),
      vPool: buffer("tune v pool", poolBytes),
      out: buffer("tune out", rows * headDim * 4),
      lse: buffer("tune lse", rows * 4)
    }
    return { plan, buffers, destroy: () => created.forEach((b) => b.destroy()) }
  } catch (e) {
    for (const b of created) b.destroy()
    throw e
  }
}

/**
 * The level tile the engine should build for `shape` on `device`: cached,
 * measured now, or (tuning off) the one findLevelTile picks.
 */
export const tuneLevelTile = async (
  device: GPUDevice, shape: LevelTileShape, options: LevelTileTuneOptions = {}
): Promise<TuneChoice<LevelTile>> => {
  const capabilities = shape.capabilities ?? capabilitiesOf(device)
  const kvDtype = shape.kvDtype ?? "f32"
  const tiles = options.tiles ?? [
    ...defaultTiles(shape.headDim, device.limits, capabilities.software),
    ...matrixLevelCandidates(device, shape, options.cache ?? defaultTuneCache(), options.version ?? canopyVersion(), options.matrixUnits)
  ]
  // none fits: the error the attention itself would give
  if (tiles.length === 0) chooseLevelTile(shape.headDim, device.limits)
  const workload = options.workload ?? LEVEL_TILE_WORKLOADS[capabilities.software ? "software" : "hardware"]
  const attentionOf = (tile: LevelTile): Promise<TreeAttention> => levelTileAttention(device, shape, tile, options.matrixUnits)
  // made when the first candidate is built, so a cached choice uploads nothing
  let step: StepInputs | undefined
  const check = checkCase(shape, tiles)
  const candidates = tiles.map((tile): TuneCandidate<LevelTile> => ({
    name: levelTileName(tile),
    value: tile,
    build: async () => {
      const attention = await attentionOf(tile)
      try {
        step ??= stepInputs(device, shape, workload)
        return levelTileTrial(device, attention, check, step)
      } catch (e) {
        attention.destroy()
        throw e
      }
    }
  }))
  try {
    return await tune(device, {
      kernel: "level-attention",
      shape: { headDim: shape.headDim, heads: shape.heads, kvHeads: shape.kvHeads, kv: kvStorageFor(kvDtype, capabilities) },
      candidates
    }, options)
  } finally {
    step?.destroy()
  }
}

/** `tile` built into a whole tree attention for `shape`, as the tuner measures it. */
const levelTileAttention = (device: GPUDevice, shape: LevelTileShape, tile: LevelTile, units?: MatrixUnits | string): Promise<TreeAttention> =>
  // one pool shard: the check's and the step's pools are laid out whole, whatever the engine shards
  createTreeAttention(device, {
    heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim, kvDtype: shape.kvDtype ?? "f32",
    capabilities: shape.capabilities ?? capabilitiesOf(device), blockSize: BLOCK_SIZE, levelTile: tile,
    ...(typeof units === "object" ? { matrixUnits: units } : {})
  })

/** What a probe of a level tile found: the check's mismatch (or none), and where it was right, the timed step. */
export interface LevelTileProbe {
  readonly mismatch: string | undefined
  readonly step?: { readonly workload: LevelTileWorkload; readonly ms: number; readonly timing: string }
}

/**
 * `tile` as the tuner would try it: built (a kernel the device refuses
 * throws ShaderCompileError), checked on the tuner's tree against float64,
 * and where right, timed on `workload` (default: the tuner's hardware step).
 */
export const probeLevelTile = async (
  device: GPUDevice, shape: LevelTileShape, tile: LevelTile, units?: MatrixUnits, workload: LevelTileWorkload = LEVEL_TILE_WORKLOADS.hardware
): Promise<LevelTileProbe> => {
  const attention = await levelTileAttention(device, shape, tile, units)
  let step: StepInputs | undefined
  let trial: CandidateTrial | undefined
  try {
    step = stepInputs(device, shape, workload)
    trial = levelTileTrial(device, attention, checkCase(shape, [tile]), step)
    const mismatch = await trial.check()
    if (mismatch !== undefined) return { mismatch }
    const timing = await timeGpu(device, trial.encode)
    return { mismatch, step: { workload, ms: timing.medianMs, timing: timing.source } }
  } finally {
    if (trial === undefined) attention.destroy()
    else trial.destroy()
    step?.destroy()
  }
}

/** The check's case, laid out, with its reference answer: computed once, when the first candidate is checked. */
const checkCase = (shape: LevelTileShape, tiles: ReadonlyArray<LevelTile>) => {
  let built: { readonly laid: ReturnType<typeof layoutCase>; readonly reference: AttentionOutput } | undefined
  return () => {
    if (built === undefined) {
      const c = fillCase(shape, checkTree(shape.heads / shape.kvHeads, tiles), 1)
      built = { laid: layoutCase(c, BLOCK_SIZE), reference: referenceTreeAttention(c) }
    }
    return built
  }
}

const levelTileTrial = (
  device: GPUDevice, attention: TreeAttention, checkCaseOf: ReturnType<typeof checkCase>, step: StepInputs
): CandidateTrial => {
  // the check runs a plan of its own first (an attention object holds one at a time): the step's is prepared when first timed
  let prepared: ReturnType<TreeAttention["prepare"]> | undefined
  return {
    check: async () => {
      const { laid, reference } = checkCaseOf()
      const result = await runTreeAttention(device, attention, laid.plan, laid.inputs)
      return attentionMismatch(result, reference, attention.config.headDim)
    },
    encode: (encoder) => attention.encode(encoder, (prepared ??= attention.prepare(step.plan)), step.buffers),
    destroy: () => {
      prepared?.destroy()
      attention.destroy()
    }
  }
}
