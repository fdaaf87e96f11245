/**
 * The attention benchmark: for each point, Hydragen tree attention against
 * per-sequence paged decoding on the same block tables, pools and queries,
 * checked to agree, timed in alternation, and set against the roofline.
 */
import {
  type AttentionBuffers,
  type AttentionKernels,
  createLargeStorageBuffer,
  createPagedDecode,
  createStorageBuffer,
  createTreeAttention,
  FillKernel,
  GpuBufferTooLarge,
  maxStorageBytes,
  readFloat32,
  relativeError,
  type RooflineFigures,
  rooflineMs,
  shardBytesFor,
  type TimeGpuOptions
} from "@canopy/kernels"
import { attentionWork } from "./attentionCost.ts"
import { sharedPrefixWorkload, type SweepPoint } from "./attentionWorkload.ts"
import type { BenchShape } from "./benchShape.ts"
import type { Spread } from "./figures.ts"
import { timePaired } from "./pairedTiming.ts"

/** Largest relative difference between the two methods' outputs that counts as agreement. */
export const AGREEMENT_TOLERANCE = 1e-3

export interface PointResult extends SweepPoint {
  /** medians over the timed pairs */
  readonly hydragenMs: number
  readonly baselineMs: number
  /** baseline ms / hydragen ms: the median of the per-pair ratios */
  readonly speedup: number
  /** the ranges over the timed pairs */
  readonly hydragenRange: Spread
  readonly baselineRange: Spread
  readonly speedupRange: Spread
  /** alternating pairs timed, after the warm-up */
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
}

export interface SkippedPoint extends SweepPoint {
  readonly reason: string
}

export type PointOutcome = { readonly kind: "measured"; readonly result: PointResult } | { readonly kind: "skipped"; readonly skipped: SkippedPoint }

export interface AttentionSweepOptions {
  readonly shape: BenchShape
  readonly points: ReadonlyArray<SweepPoint>
  readonly roofline: RooflineFigures
  /** where Hydragen attends suffix nodes (one sequence each): the decode kernel (default) or the level kernel */
  readonly suffixKernel?: "decode" | "level"
  readonly timing?: TimeGpuOptions
  /** called before each point starts and after it ends */
  readonly onProgress?: (index: number, total: number, point: SweepPoint, outcome?: PointOutcome) => void
}

export interface AttentionSweep {
  readonly points: ReadonlyArray<PointResult>
  readonly skipped: ReadonlyArray<SkippedPoint>
}

const F32 = 4

interface Methods {
  /** both methods' kernels for pools in `shards` shards (made on first use) */
  readonly forShards: (shards: number) => Promise<{ readonly hydragen: AttentionKernels; readonly baseline: AttentionKernels }>
  readonly fill: FillKernel
}

const measurePoint = async (
  device: GPUDevice,
  methods: Methods,
  options: AttentionSweepOptions,
  point: SweepPoint
): Promise<PointOutcome> => {
  const { shape, roofline } = options
  const { heads, kvHeads, headDim, blockSize } = shape
  const { plan, poolBlocks } = sharedPrefixWorkload(point, blockSize)
  // a pool larger than one storage binding is laid out in shards of KV heads, bound one at a time
  const tokens = poolBlocks * blockSize
  const binding = maxStorageBytes(device)
  const shards = Array.from({ length: kvHeads }, (_, i) => i + 1)
    .find((s) => kvHeads % s === 0 && shardBytesFor(tokens, kvHeads / s, headDim) <= binding)
  if (shards === undefined) {
    const reason = `one KV head's pool (${(shardBytesFor(tokens, 1, headDim) / 2 ** 30).toFixed(2)} GiB) exceeds the device's storage binding (${(binding / 2 ** 30).toFixed(2)} GiB)`
    return { kind: "skipped", skipped: { ...point, reason } }
  }
  const poolBytes = shards === 1 ? tokens * kvHeads * headDim * F32 : shards * shardBytesFor(tokens, kvHeads / shards, headDim)
  const { hydragen, baseline } = await methods.forShards(shards)
  const owned: Array<{ destroy(): void }> = []
  const own = <T extends { destroy(): void }>(x: T): T => {
    owned.push(x)
    return x
  }
  try {
    const rowValues = point.batch * heads * headDim
    const q = own(createStorageBuffer(device, "bench q", rowValues * F32))
    const kPool = own(createLargeStorageBuffer(device, "bench k pool", poolBytes))
    const vPool = own(createLargeStorageBuffer(device, "bench v pool", poolBytes))
    const output = (name: string): Pick<AttentionBuffers, "out" | "lse"> => ({
      out: own(createStorageBuffer(device, `bench ${name} out`, rowValues * F32)),
      lse: own(createStorageBuffer(device, `bench ${name} lse`, point.batch * heads * F32))
    })
    const hydragenBuffers: AttentionBuffers = { q, kPool, vPool, ...output("hydragen") }
    const baselineBuffers: AttentionBuffers = { q, kPool, vPool, ...output("baseline") }

    // Random q, K and V generated on the GPU: nothing large crosses the bus.
    const fillEncoder = device.createCommandEncoder()
    const poolValues = poolBytes / F32
    for (const [buffer, count, tensorId] of [[q, rowValues, 0], [kPool, poolValues, 1], [vPool, poolValues, 2]] as const) {
      own(methods.fill.encode(fillEncoder, buffer, count, { seed: 7, tensorId, scale: 1 }))
    }
    device.queue.submit([fillEncoder.finish()])

    const hydragenPlan = own(hydragen.prepare(plan))
    const baselinePlan = own(baseline.prepare(plan))

    // One run of each, compared before timing: a fast wrong kernel is no result.
    const checkEncoder = device.createCommandEncoder()
    hydragen.encode(checkEncoder, hydragenPlan, hydragenBuffers)
    baseline.encode(checkEncoder, baselinePlan, baselineBuffers)
    device.queue.submit([checkEncoder.finish()])
    const [hOut, bOut, hLse, bLse] = await Promise.all([
      readFloat32(device, hydragenBuffers.out, rowValues),
      readFloat32(device, baselineBuffers.out, rowValues),
      readFloat32(device, hydragenBuffers.lse, point.batch * heads),
      readFloat32(device, baselineBuffers.lse, point.batch * heads)
    ])
    const maxRelDiff = Math.max(relativeError(hOut, bOut), relativeError(hLse, bLse))

    const timing = await timePaired(
      device,
      (e) => hydragen.encode(e, hydragenPlan, hydragenBuffers),
      (e) => baseline.encode(e, baselinePlan, baselineBuffers),
      options.timing
    )
    const work = attentionWork(shape, point)
    const hydragenMs = timing.aMs
    const baselineMs = timing.bMs
    // per ms → per s (×1e3), in 1e9 units (÷1e9)
    const perSecond = (amount: number, ms: number) => amount / (ms * 1e6)
    const result: PointResult = {
      ...point,
      hydragenMs,
      baselineMs,
      speedup: timing.ratio.median,
      hydragenRange: timing.a,
      baselineRange: timing.b,
      speedupRange: timing.ratio,
      pairs: timing.samples,
      hydragenGflops: perSecond(work.flops, hydragenMs),
      baselineGflops: perSecond(work.flops, baselineMs),
      hydragenGBps: perSecond(work.hydragenBytes, hydragenMs),
      baselineGBps: perSecond(work.baselineBytes, baselineMs),
      hydragenRoofline: rooflineMs(roofline, { bytes: work.hydragenBytes, flops: work.flops }) / hydragenMs,
      baselineRoofline: rooflineMs(roofline, { bytes: work.baselineBytes, flops: work.flops }) / baselineMs,
      ...work,
      maxRelDiff,
      agree: maxRelDiff < AGREEMENT_TOLERANCE,
      timing: timing.source
    }
    return { kind: "measured", result }
  } catch (e) {
    // partial-state or plan buffers beyond the binding limit: a shape this device cannot take
    if (e instanceof GpuBufferTooLarge) return { kind: "skipped", skipped: { ...point, reason: e.message } }
    throw e
  } finally {
    for (const x of owned.reverse()) x.destroy()
  }
}

export const runAttentionSweep = async (device: GPUDevice, options: AttentionSweepOptions): Promise<AttentionSweep> => {
  const made = new Map<number, { hydragen: AttentionKernels; baseline: AttentionKernels }>()
  const forShards = async (poolShards: number) => {
    const known = made.get(poolShards)
    if (known !== undefined) return known
    const kernelOptions = { ...options.shape, poolShards }
    const kernels = {
      hydragen: await createTreeAttention(device, { ...kernelOptions, decodeMaxEntries: options.suffixKernel === "level" ? 0 : 1 }),
      baseline: await createPagedDecode(device, kernelOptions)
    }
    made.set(poolShards, kernels)
    return kernels
  }
  const fill = await FillKernel.create(device)
  const points: Array<PointResult> = []
  const skipped: Array<SkippedPoint> = []
  try {
    const total = options.points.length
    for (const [index, point] of options.points.entries()) {
      options.onProgress?.(index, total, point)
      const outcome = await measurePoint(device, { forShards, fill }, options, point)
      if (outcome.kind === "measured") points.push(outcome.result)
      else skipped.push(outcome.skipped)
      options.onProgress?.(index, total, point, outcome)
    }
  } finally {
    for (const kernels of made.values()) {
      kernels.hydragen.destroy()
      kernels.baseline.destroy()
    }
  }
  return { points, skipped }
}
