/**
 * Timing GPU work: warm-up runs, then the median of the repeats, each one
 * GpuTimer measurement (tune/timing.ts: the device's own timestamps where it
 * has `timestamp-query`, else the wall clock to `onSubmittedWorkDone`). The
 * source is "wall-clock" when any repeat fell back to it.
 */
import { GpuTimer, median, type TimingSource } from "../tune/timing.ts"

export interface GpuTiming {
  readonly medianMs: number
  readonly minMs: number
  readonly samplesMs: ReadonlyArray<number>
  readonly source: TimingSource
}

export interface TimeGpuOptions {
  readonly warmup?: number
  readonly repeats?: number
  /** stop repeating once this much time was spent measuring (ms) */
  readonly budgetMs?: number
}

export const timeGpu = async (
  device: GPUDevice,
  encode: (encoder: GPUCommandEncoder) => void,
  options: TimeGpuOptions = {}
): Promise<GpuTiming> => {
  const warmup = options.warmup ?? 2
  const repeats = options.repeats ?? 7
  const budgetMs = options.budgetMs ?? 20_000
  const timer = GpuTimer.create(device)
  try {
    for (let i = 0; i < warmup; i++) await timer.measure(encode)
    const samples: Array<number> = []
    let source = timer.source
    const start = performance.now()
    for (let i = 0; i < repeats; i++) {
      const m = await timer.measure(encode)
      samples.push(m.ms)
      if (m.source === "wall-clock") source = "wall-clock"
      if (performance.now() - start > budgetMs && samples.length >= 3) break
    }
    return { medianMs: median(samples), minMs: Math.min(...samples), samplesMs: samples, source }
  } finally {
    timer.destroy()
  }
}
