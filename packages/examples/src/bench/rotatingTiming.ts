/**
 * Times GPU workloads in rounds, each round running every workload once, the
 * order rotating from round to round (A, B, C; B, C, A; C, A, B; …), after
 * warming each up, so drifts in the machine's state — other processes on a
 * software adapter's CPU cores, clocks and heat on a GPU — fall on all alike
 * and their ratios stay fair. Each round gives one ratio per pair of
 * workloads; the figures are medians with their range. Two workloads
 * simply alternate (A, B; B, A; …).
 */
import { timeGpu, type TimeGpuOptions } from "@canopy/kernels"
import { pairedRatios, type Spread, spreadOf } from "./figures.ts"

export interface RotatingTiming {
  /** each workload's ms, round by round */
  readonly samples: ReadonlyArray<ReadonlyArray<number>>
  /** each workload's median and range */
  readonly spreads: ReadonlyArray<Spread>
  readonly rounds: number
  readonly source: "timestamp-query" | "wall-clock"
}

type Encode = (encoder: GPUCommandEncoder) => void

/**
 * `repeats` rounds (fewer, but at least 3, once `budgetMs` is spent), each
 * workload warmed up `warmup` times before its first timed run.
 */
export const timeRotating = async (device: GPUDevice, workloads: ReadonlyArray<Encode>, options: TimeGpuOptions = {}): Promise<RotatingTiming> => {
  const warmup = options.warmup ?? 2
  const repeats = options.repeats ?? 7
  const budgetMs = options.budgetMs ?? 20_000
  const samples = workloads.map((): Array<number> => [])
  let source: RotatingTiming["source"] = "wall-clock"
  const start = performance.now()
  for (let round = 0; round < repeats; round++) {
    for (let k = 0; k < workloads.length; k++) {
      const w = (round + k) % workloads.length
      const timing = await timeGpu(device, workloads[w]!, { warmup: round === 0 ? warmup : 0, repeats: 1 })
      samples[w]!.push(timing.medianMs)
      source = timing.source
    }
    if (performance.now() - start > budgetMs && round + 1 >= 3) break
  }
  return { samples, spreads: samples.map(spreadOf), rounds: samples[0]?.length ?? 0, source }
}

/** How many times faster workload `fast` ran than `slow`: the median and range of the per-round ratios. */
export const roundRatio = (timing: RotatingTiming, slow: number, fast: number): Spread =>
  spreadOf(pairedRatios(timing.samples[slow]!, timing.samples[fast]!))
