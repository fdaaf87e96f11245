/**
 * The attention benchmark: for each point, Hydragen tree attention against
 * per-sequence paged decoding on the same block tables, pools and queries,
 * checked to agree, timed in rotating rounds, and set against the roofline.
 * With f16 KV, both methods also run on f32 pools holding the same values in
 * the same rounds: the f16 pools' speed-up over f32 comes from one run. With
 * several level-kernel variants, Hydragen runs with each of the others too,
 * on the asked pools in the same rounds, checked against the first.
 */
import {
  type AttentionBuffers,
  type AttentionKernels,
  createPagedDecode,
  createStorageBuffer,
  createTreeAttention,
  DEFAULT_LEVEL_VARIANT,
  GpuBufferTooLarge,
  type KvDtype,
  type LevelVariant,
  maxStorageBytes,
  readFloat32,
  relativeError,
  type RooflineFigures,
  rooflineMs,
  type TimeGpuOptions
} from "@canopy/kernels"
import { attentionWork } from "./attentionCost.ts"
import { sharedPrefixWorkload, type SweepPoint } from "./attentionWorkload.ts"
import { type BenchPools, benchPoolLayout, type PoolLayout, PoolWriter } from "./benchPools.ts"
import type { BenchShape } from "./benchShape.ts"
import type { Spread } from "./figures.ts"
import { roundRatio, type RotatingTiming, timeRotating } from "./rotatingTiming.ts"

/** Largest relative difference between the two methods' outputs (same pools) that counts as agreement. */
export const AGREEMENT_TOLERANCE = 1e-3

/** Largest relative difference between f16 and f32 pools' outputs that counts as agreement: f16 rounds K and V (2⁻¹¹ relative). */
export const F16_AGREEMENT_TOLERANCE = 1e-2

/** The same point on f32 pools, measured in the same rounds as the f16 one. */
export interface F32Reference {
  readonly hydragenMs: number
  readonly baselineMs: number
  readonly hydragenRange: Spread
  readonly baselineRange: Spread
  /** f32 ms / f16 ms per round: how many times faster each method ran on f16 pools */
  readonly hydragenF16Speedup: Spread
  readonly baselineF16Speedup: Spread
  /** norm-wise relative difference of Hydragen's outputs (and LSEs), f16 pools vs f32 */
  readonly maxRelDiff: number
  readonly agree: boolean
}

/** Hydragen with another level-kernel variant, measured in the same rounds as the first. */
export interface VariantFigures {
  readonly levelVariant: LevelVariant
  readonly ms: number
  readonly range: Spread
  /** the first variant's ms / this one's per round: how many times faster this variant ran */
  readonly speedup: Spread
  /** norm-wise relative difference of the outputs (and LSEs) from the first variant's */
  readonly maxRelDiff: number
  readonly agree: boolean
}

export interface PointResult extends SweepPoint {
  /** the KV pools' element type the figures below are for */
  readonly kvDtype: KvDtype
  /** the level kernel of the hydragen figures */
  readonly levelVariant: LevelVariant
  /** Hydragen with each further variant of the sweep */
  readonly variants?: ReadonlyArray<VariantFigures>
  /** medians over the timed rounds */
  readonly hydragenMs: number
  readonly baselineMs: number
  /** baseline ms / hydragen ms: the median of the per-round ratios */
  readonly speedup: number
  /** the ranges over the timed rounds */
  readonly hydragenRange: Spread
  readonly baselineRange: Spread
  readonly speedupRange: Spread
  /** rounds timed (each method once per round, rotating), after the warm-up */
  readonly pairs: number
  readonly hydragenGflops: number
  readonly baselineGflops: number
  readonly hydragenGBps: number
  readonly baselineGBps: number
  /** roofline time / measured time: 1 means at the roofline */
  readonly hydragenRoofline: number
  readonly baselineRoofline: number
  readonly flops: number
  readonly hydragenBytes: number
  readonly baselineBytes: number
  /** norm-wise relative difference of the outputs (and of the LSEs), hydragen vs baseline */
  readonly maxRelDiff: number
  readonly agree: boolean
  readonly timing: "timestamp-query" | "wall-clock"
  /** with f16 KV: the f32 pools' figures and f16's speed-up over them */
  readonly f32?: F32Reference
}

export interface SkippedPoint extends SweepPoint {
  readonly reason: string
}

export type PointOutcome = { readonly kind: "measured"; readonly result: PointResult } | { readonly kind: "skipped"; readonly skipped: SkippedPoint }

export interface AttentionSweepOptions {
  readonly shape: BenchShape
  readonly points: ReadonlyArray<SweepPoint>
  readonly roofline: RooflineFigures
  /** the KV pools' element type (default "f32"); "f16" also measures f32 pools alongside */
  readonly kvDtype?: KvDtype
  /** where Hydragen attends suffix nodes (one sequence each): the decode kernel (default) or the level kernel */
  readonly suffixKernel?: "decode" | "level"
  /** Hydragen's level-kernel variants (default: DEFAULT_LEVEL_VARIANT alone): the first gives the hydragen figures, the others are timed beside it */
  readonly levelVariants?: ReadonlyArray<LevelVariant>
  readonly timing?: TimeGpuOptions
  /** called before each point starts and after it ends */
  readonly onProgress?: (index: number, total: number, point: SweepPoint, outcome?: PointOutcome) => void
}

export interface AttentionSweep {
  readonly points: ReadonlyArray<PointResult>
  readonly skipped: ReadonlyArray<SkippedPoint>
}

const F32 = 4

interface LayoutKernels {
  readonly hydragen: AttentionKernels
  readonly baseline: AttentionKernels
  /** Hydragen with the sweep's further level variants, in order (on the asked dtype's pools; none on the f32 reference) */
  readonly variants: ReadonlyArray<AttentionKernels>
}

interface Methods {
  /** the methods' kernels for pools of this layout (made on first use) */
  readonly forLayout: (layout: PoolLayout) => Promise<LayoutKernels>
  readonly writer: PoolWriter
}

type Encode = (encoder: GPUCommandEncoder) => void

/** One dtype's pools at a point, with both methods prepared on them. */
interface Run {
  readonly hydragen: Encode
  readonly baseline: Encode
  readonly hydragenOut: AttentionBuffers
  readonly baselineOut: AttentionBuffers
  /** the further level variants (on the asked dtype's pools, the first run, only) */
  readonly variants: ReadonlyArray<{ readonly encode: Encode; readonly out: AttentionBuffers }>
}

type Owner = <T extends { destroy(): void }>(x: T) => T

/** The dtypes a sweep runs: the asked one first, then f32 as the reference for f16. */
export const sweepDtypes = (kvDtype: KvDtype): ReadonlyArray<KvDtype> => (kvDtype === "f16" ? ["f16", "f32"] : ["f32"])

const prepareRuns = async (
  device: GPUDevice, methods: Methods, shape: BenchShape, point: SweepPoint, layouts: ReadonlyArray<PoolLayout>, own: Owner
): Promise<ReadonlyArray<Run>> => {
  const { plan, poolBlocks } = sharedPrefixWorkload(point, shape.blockSize)
  const rowValues = point.batch * shape.heads * shape.headDim
  const q = own(createStorageBuffer(device, "bench q", rowValues * F32))
  const pools = layouts.map((layout) => {
    const p = methods.writer.allocate(layout)
    own(p.kPool)
    own(p.vPool)
    return p
  })
  await methods.writer.write(pools, shape, poolBlocks * shape.blockSize, maxStorageBytes(device))
  await methods.writer.fillQueries(q, rowValues)
  const output = (name: string, pool: BenchPools): AttentionBuffers => ({
    q, kPool: pool.kPool, vPool: pool.vPool,
    out: own(createStorageBuffer(device, `bench ${name} out`, rowValues * F32)),
    lse: own(createStorageBuffer(device, `bench ${name} lse`, point.batch * shape.heads * F32))
  })
  const runs: Array<Run> = []
  for (const pool of pools) {
    const { hydragen, baseline, variants } = await methods.forLayout(pool.layout)
    const hydragenPlan = own(hydragen.prepare(plan))
    const baselinePlan = own(baseline.prepare(plan))
    const hydragenOut = output(`hydragen ${pool.layout.kvDtype}`, pool)
    const baselineOut = output(`baseline ${pool.layout.kvDtype}`, pool)
    runs.push({
      hydragen: (e) => hydragen.encode(e, hydragenPlan, hydragenOut),
      baseline: (e) => baseline.encode(e, baselinePlan, baselineOut),
      hydragenOut,
      baselineOut,
      variants: variants.map((kernels, k) => {
        const prepared = own(kernels.prepare(plan))
        const out = output(`hydragen variant ${k} ${pool.layout.kvDtype}`, pool)
        return { encode: (e: GPUCommandEncoder) => kernels.encode(e, prepared, out), out }
      })
    })
  }
  return runs
}

/**
 * Every run once, then their outputs compared: hydragen against baseline on
 * the same pools (`within`, per run), the first run's hydragen against each
 * other run's (`across`: f16 pools against f32) and against its further
 * level variants (`variants`).
 */
const checkRuns = async (
  device: GPUDevice, runs: ReadonlyArray<Run>, point: SweepPoint, shape: BenchShape
): Promise<{ readonly within: ReadonlyArray<number>; readonly across: ReadonlyArray<number>; readonly variants: ReadonlyArray<number> }> => {
  const encoder = device.createCommandEncoder()
  for (const r of runs) {
    r.hydragen(encoder)
    r.baseline(encoder)
    for (const v of r.variants) v.encode(encoder)
  }
  device.queue.submit([encoder.finish()])
  const rows = point.batch * shape.heads
  const read = (b: AttentionBuffers) => Promise.all([readFloat32(device, b.out, rows * shape.headDim), readFloat32(device, b.lse, rows)])
  const outputs = await Promise.all(runs.map((r) => Promise.all([read(r.hydragenOut), read(r.baselineOut)])))
  const variantOutputs = await Promise.all(runs[0]!.variants.map((v) => read(v.out)))
  const diff = (a: ReadonlyArray<Float32Array>, b: ReadonlyArray<Float32Array>) => Math.max(relativeError(a[0]!, b[0]!), relativeError(a[1]!, b[1]!))
  return {
    within: outputs.map(([h, b]) => diff(h, b)),
    across: outputs.slice(1).map(([h]) => diff(outputs[0]![0], h)),
    variants: variantOutputs.map((v) => diff(outputs[0]![0], v))
  }
}

/** The first dtype's result from its two workloads' timings (0 hydragen, 1 baseline), the roofline and the checks. */
const resultOf = (
  options: AttentionSweepOptions, point: SweepPoint, kvDtype: KvDtype, timing: RotatingTiming, maxRelDiff: number
): PointResult => {
  const work = attentionWork(options.shape, point, kvDtype)
  const [hydragen, baseline] = [timing.spreads[0]!, timing.spreads[1]!]
  const speedup = roundRatio(timing, 1, 0)
  // per ms → per s (×1e3), in 1e9 units (÷1e9)
  const perSecond = (amount: number, ms: number) => amount / (ms * 1e6)
  return {
    ...point,
    kvDtype,
    levelVariant: options.levelVariants?.[0] ?? DEFAULT_LEVEL_VARIANT,
    hydragenMs: hydragen.median,
    baselineMs: baseline.median,
    speedup: speedup.median,
    hydragenRange: hydragen,
    baselineRange: baseline,
    speedupRange: speedup,
    pairs: timing.rounds,
    hydragenGflops: perSecond(work.flops, hydragen.median),
    baselineGflops: perSecond(work.flops, baseline.median),
    hydragenGBps: perSecond(work.hydragenBytes, hydragen.median),
    baselineGBps: perSecond(work.baselineBytes, baseline.median),
    hydragenRoofline: rooflineMs(options.roofline, { bytes: work.hydragenBytes, flops: work.flops }) / hydragen.median,
    baselineRoofline: rooflineMs(options.roofline, { bytes: work.baselineBytes, flops: work.flops }) / baseline.median,
    ...work,
    maxRelDiff,
    agree: maxRelDiff < AGREEMENT_TOLERANCE,
    timing: timing.source
  }
}

/** The f32 runs' figures (workloads 2 and 3) against the f16 ones (0 and 1). */
const f32ReferenceOf = (timing: RotatingTiming, maxRelDiff: number): F32Reference => ({
  hydragenMs: timing.spreads[2]!.median,
  baselineMs: timing.spreads[3]!.median,
  hydragenRange: timing.spreads[2]!,
  baselineRange: timing.spreads[3]!,
  hydragenF16Speedup: roundRatio(timing, 2, 0),
  baselineF16Speedup: roundRatio(timing, 3, 1),
  maxRelDiff,
  agree: maxRelDiff < F16_AGREEMENT_TOLERANCE
})

/** The further variants' figures: their workloads follow the runs' pairs, from `first` on. */
const variantFiguresOf = (
  variants: ReadonlyArray<LevelVariant>, timing: RotatingTiming, first: number, maxRelDiffs: ReadonlyArray<number>
): ReadonlyArray<VariantFigures> =>
  variants.map((levelVariant, k) => ({
    levelVariant,
    ms: timing.spreads[first + k]!.median,
    range: timing.spreads[first + k]!,
    speedup: roundRatio(timing, 0, first + k),
    maxRelDiff: maxRelDiffs[k]!,
    agree: maxRelDiffs[k]! < AGREEMENT_TOLERANCE
  }))

const measurePoint = async (device: GPUDevice, methods: Methods, options: AttentionSweepOptions, point: SweepPoint): Promise<PointOutcome> => {
  const { shape } = options
  const dtypes = sweepDtypes(options.kvDtype ?? "f32")
  const { poolBlocks } = sharedPrefixWorkload(point, shape.blockSize)
  // a pool larger than one storage binding is laid out in shards of KV heads, bound one at a time
  const layouts: Array<PoolLayout> = []
  for (const dtype of dtypes) {
    const layout = benchPoolLayout(shape, poolBlocks * shape.blockSize, dtype, maxStorageBytes(device))
    if ("reason" in layout) return { kind: "skipped", skipped: { ...point, reason: layout.reason } }
    layouts.push(layout)
  }
  const owned: Array<{ destroy(): void }> = []
  const own: Owner = (x) => {
    owned.push(x)
    return x
  }
  try {
    const runs = await prepareRuns(device, methods, shape, point, layouts, own)
    // One run of each, compared before timing: a fast wrong kernel is no result.
    const { within, across, variants } = await checkRuns(device, runs, point, shape)
    const workloads = [...runs.flatMap((r) => [r.hydragen, r.baseline]), ...runs[0]!.variants.map((v) => v.encode)]
    const timing = await timeRotating(device, workloads, options.timing)
    const result = resultOf(options, point, dtypes[0]!, timing, Math.max(...within))
    const further = (options.levelVariants ?? []).slice(1)
    return {
      kind: "measured",
      result: {
        ...result,
        ...(across.length > 0 ? { f32: f32ReferenceOf(timing, across[0]!) } : {}),
        ...(further.length > 0 ? { variants: variantFiguresOf(further, timing, 2 * runs.length, variants) } : {})
      }
    }
  } catch (e) {
    // partial-state or plan buffers beyond the binding limit: a shape this device cannot take
    if (e instanceof GpuBufferTooLarge) return { kind: "skipped", skipped: { ...point, reason: e.message } }
    throw e
  } finally {
    for (const x of owned.reverse()) x.destroy()
  }
}

export const runAttentionSweep = async (device: GPUDevice, options: AttentionSweepOptions): Promise<AttentionSweep> => {
  const made = new Map<string, LayoutKernels>()
  const [levelVariant = DEFAULT_LEVEL_VARIANT, ...further] = options.levelVariants ?? []
  const forLayout = async (layout: PoolLayout) => {
    const key = `${layout.kvDtype}:${layout.shards}`
    const known = made.get(key)
    if (known !== undefined) return known
    const kernelOptions = { ...options.shape, poolShards: layout.shards, kvDtype: layout.kvDtype }
    const hydragenOf = (variant: LevelVariant) =>
      createTreeAttention(device, { ...kernelOptions, decodeMaxEntries: options.suffixKernel === "level" ? 0 : 1, levelVariant: variant })
    // made one by one, so that a failed compile leaves no earlier object behind
    const created: Array<AttentionKernels> = []
    const make = async (creating: Promise<AttentionKernels>) => {
      const kernels = await creating
      created.push(kernels)
      return kernels
    }
    try {
      const hydragen = await make(hydragenOf(levelVariant))
      const baseline = await make(createPagedDecode(device, kernelOptions))
      const variants: Array<AttentionKernels> = []
      // the further variants run on the asked pools only (not on the f32 reference of f16 ones)
      if (layout.kvDtype === (options.kvDtype ?? "f32")) for (const variant of further) variants.push(await make(hydragenOf(variant)))
      const kernels: LayoutKernels = { hydragen, baseline, variants }
      made.set(key, kernels)
      return kernels
    } catch (e) {
      for (const kernels of created) kernels.destroy()
      throw e
    }
  }
  const writer = await PoolWriter.create(device, sweepDtypes(options.kvDtype ?? "f32"))
  const points: Array<PointResult> = []
  const skipped: Array<SkippedPoint> = []
  try {
    const total = options.points.length
    for (const [index, point] of options.points.entries()) {
      options.onProgress?.(index, total, point)
      const outcome = await measurePoint(device, { forLayout, writer }, options, point)
      if (outcome.kind === "measured") points.push(outcome.result)
      else skipped.push(outcome.skipped)
      options.onProgress?.(index, total, point, outcome)
    }
  } finally {
    for (const kernels of made.values()) {
      kernels.hydragen.destroy()
      kernels.baseline.destroy()
      for (const variant of kernels.variants) variant.destroy()
    }
  }
  return { points, skipped }
}
