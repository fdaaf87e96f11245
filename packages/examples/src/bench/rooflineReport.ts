/**
 * The roofline as a report: its JSON form (written by `canopy bench roofline
 * --json`, read back by `canopy bench attention --roofline`), a printed
 * summary, and the problem sizes that suit an adapter.
 */
import { measureBandwidth, measureMatmulRate, type RooflineFigures, type RooflineOptions } from "@canopy/kernels"
import { median, type Spread, spreadOf, valueWithRange } from "./figures.ts"

export interface RooflineRounds {
  /** each timed round's figures, in round order */
  readonly gbPerSecond: ReadonlyArray<number>
  readonly gflops: ReadonlyArray<number>
}

/** The figures are the medians over `rounds`, when measured in rounds. */
export interface RooflineReport extends RooflineFigures {
  readonly adapter: string
  readonly software: boolean
  readonly rounds?: RooflineRounds
}

/**
 * The roofline measured in rounds: one untimed round first (pipelines,
 * buffers and the first touches of memory), then `rounds` rounds that each
 * time the copy and then the matmul, so the two alternate and a change in the
 * machine's load shows in both ranges. Each figure is its rounds' median.
 */
export const measureRooflineRounds = async (
  device: GPUDevice,
  options: RooflineOptions,
  rounds: number
): Promise<RooflineFigures & { readonly rounds: RooflineRounds }> => {
  await measureBandwidth(device, options.copyBytes)
  await measureMatmulRate(device, options.matmulSize)
  const copies = []
  const matmuls = []
  for (let r = 0; r < Math.max(1, rounds); r++) {
    copies.push(await measureBandwidth(device, options.copyBytes))
    matmuls.push(await measureMatmulRate(device, options.matmulSize))
  }
  const copyMs = median(copies.map((c) => c.ms))
  const matmulMs = median(matmuls.map((m) => m.ms))
  const bandwidth = copies[0]!
  const matmul = matmuls[0]!
  return {
    bandwidth: { ...bandwidth, ms: copyMs, gbPerSecond: bandwidth.bytes / (copyMs * 1e6) },
    matmul: { ...matmul, ms: matmulMs, gflops: (2 * matmul.n ** 3) / (matmulMs * 1e6) },
    rounds: { gbPerSecond: copies.map((c) => c.gbPerSecond), gflops: matmuls.map((m) => m.gflops) }
  }
}

/**
 * Sizes that run in seconds yet exceed caches: the software adapter computes
 * on two CPU cores, a GPU needs large problems to reach its rates.
 */
export const defaultRooflineOptions = (software: boolean): RooflineOptions =>
  software ? { copyBytes: 64 * 2 ** 20, matmulSize: 512 } : { copyBytes: 2 ** 30, matmulSize: 4096 }

const figure = (value: number, rounds: ReadonlyArray<number> | undefined, unit: string): string => {
  const spread: Spread = rounds === undefined ? spreadOf([value]) : { ...spreadOf(rounds), median: value }
  return spread.n > 1 ? `${valueWithRange(spread, 1, ` ${unit}`)} over ${spread.n} rounds` : `${value.toFixed(1)} ${unit}`
}

export const formatRoofline = (r: RooflineReport): ReadonlyArray<string> => [
  `adapter:    ${r.adapter}${r.software ? ": only ratios mean anything here" : ""}`,
  `bandwidth:  ${figure(r.bandwidth.gbPerSecond, r.rounds?.gbPerSecond, "GB/s")}  (vec4 copy of ${(r.bandwidth.bytes / 2 / 2 ** 20).toFixed(0)} MiB, read + written, median ${r.bandwidth.ms.toFixed(3)} ms, ${r.bandwidth.timing})`,
  `f32 matmul: ${figure(r.matmul.gflops, r.rounds?.gflops, "GFLOP/s")}  (${r.matmul.variant} variant, ${r.matmul.n}³, median ${r.matmul.ms.toFixed(3)} ms, ${r.matmul.timing})`,
  ...(r.rounds !== undefined
    ? ["timing:     an untimed round first, then each round times the copy then the matmul (each the median of 7 runs after 2 warm-ups); medians over the rounds, ranges in brackets"]
    : []),
  ...(r.software ? ["depends on: the CPU's cores and their load (the software adapter computes on them), and the sizes (--copy-mib, --size)"] : [])
]

const positive = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value) && value > 0

/**
 * Reads the figures back from a roofline report or an attention report (its
 * `roofline` field); throws a RangeError saying what is missing.
 */
export const parseRooflineJson = (text: string, source: string): RooflineFigures => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new RangeError(`${source}: not JSON (${e instanceof Error ? e.message : String(e)})`)
  }
  const root = json as { roofline?: unknown } | null
  const figures = (typeof root === "object" && root !== null && "roofline" in root ? root.roofline : root) as Partial<RooflineFigures> | null
  if (!positive(figures?.bandwidth?.gbPerSecond) || !positive(figures?.matmul?.gflops)) {
    throw new RangeError(`${source}: expected bandwidth.gbPerSecond and matmul.gflops (positive numbers), as written by \`canopy bench roofline --json\``)
  }
  return { bandwidth: figures.bandwidth, matmul: figures.matmul }
}
