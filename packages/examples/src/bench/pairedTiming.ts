/**
 * Times two GPU workloads in alternation (A, B, A, B, …), after warming both
 * up, so drifts in the machine's state — other processes on a software
 * adapter's CPU cores, clocks and heat on a GPU — fall on both alike and
 * their ratio stays fair. Each pair gives one ratio; the figures are medians
 * with their range.
 */
import { timeGpu, type TimeGpuOptions } from "@canopy/kernels"
import { pairedRatios, type Spread, spreadOf } from "./figures.ts"

export interface PairedTiming {
  /** medians */
  readonly aMs: number
  readonly bMs: number
  readonly a: Spread
  readonly b: Spread
  /** bMs / aMs of each pair: how many times faster A ran than B */
  readonly ratio: Spread
  readonly samples: number
  readonly source: "timestamp-query" | "wall-clock"
}

type Encode = (encoder: GPUCommandEncoder) => void

/** Medians of `repeats` alternating pairs (fewer, but at least 3, once `budgetMs` is spent), after `warmup` runs of each. */
export const timePaired = async (device: GPUDevice, a: Encode, b: Encode, options: TimeGpuOptions = {}): Promise<PairedTiming> => {
  const warmup = options.warmup ?? 2
  const repeats = options.repeats ?? 7
  const budgetMs = options.budgetMs ?? 20_000
  const once = (encode: Encode, warm: number) => timeGpu(device, encode, { warmup: warm, repeats: 1 })
  const aSamples: Array<number> = []
  const bSamples: Array<number> = []
  let source: PairedTiming["source"] = "wall-clock"
  const start = performance.now()
  for (let i = 0; i < repeats; i++) {
    const warm = i === 0 ? warmup : 0
    // the pair's order alternates too, so neither side always runs on the other's heels
    const [ta, tb] = i % 2 === 0
      ? [await once(a, warm), await once(b, warm)]
      : await once(b, warm).then(async (tb) => [await once(a, warm), tb] as const)
    aSamples.push(ta.medianMs)
    bSamples.push(tb.medianMs)
    source = ta.source
    if (performance.now() - start > budgetMs && aSamples.length >= 3) break
  }
  const aSpread = spreadOf(aSamples)
  const bSpread = spreadOf(bSamples)
  return {
    aMs: aSpread.median,
    bMs: bSpread.median,
    a: aSpread,
    b: bSpread,
    ratio: spreadOf(pairedRatios(bSamples, aSamples)),
    samples: aSamples.length,
    source
  }
}
