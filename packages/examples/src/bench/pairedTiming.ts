/**
 * Times two GPU workloads in alternation (A, B, A, B, …), so drifts in the
 * machine's state — other processes on a software adapter's CPU cores, clocks
 * and heat on a GPU — fall on both alike and their ratio stays fair.
 */
import { timeGpu, type TimeGpuOptions } from "@canopy/kernels"

export interface PairedTiming {
  readonly aMs: number
  readonly bMs: number
  readonly samples: number
  readonly source: "timestamp-query" | "wall-clock"
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((x, y) => x - y)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

type Encode = (encoder: GPUCommandEncoder) => void

/** Medians of `repeats` alternating runs (fewer, but at least 3, once `budgetMs` is spent), after `warmup` runs of each. */
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
    const ta = await once(a, warm)
    const tb = await once(b, warm)
    aSamples.push(ta.medianMs)
    bSamples.push(tb.medianMs)
    source = ta.source
    if (performance.now() - start > budgetMs && aSamples.length >= 3) break
  }
  return { aMs: median(aSamples), bMs: median(bSamples), samples: aSamples.length, source }
}
