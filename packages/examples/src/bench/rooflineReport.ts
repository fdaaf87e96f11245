/**
 * The roofline as a report: its JSON form (written by `canopy bench roofline
 * --json`, read back by `canopy bench attention --roofline`), a printed
 * summary, and the problem sizes that suit an adapter.
 */
import type { RooflineFigures, RooflineOptions } from "@canopy/kernels"

export interface RooflineReport extends RooflineFigures {
  readonly adapter: string
  readonly software: boolean
}

/**
 * Sizes that run in seconds yet exceed caches: the software adapter computes
 * on two CPU cores, a GPU needs large problems to reach its rates.
 */
export const defaultRooflineOptions = (software: boolean): RooflineOptions =>
  software ? { copyBytes: 64 * 2 ** 20, matmulSize: 512 } : { copyBytes: 2 ** 30, matmulSize: 4096 }

export const formatRoofline = (r: RooflineReport): ReadonlyArray<string> => [
  `adapter:    ${r.adapter}${r.software ? ": only ratios mean anything here" : ""}`,
  `bandwidth:  ${r.bandwidth.gbPerSecond.toFixed(1)} GB/s  (vec4 copy of ${(r.bandwidth.bytes / 2 / 2 ** 20).toFixed(0)} MiB, read + written, ${r.bandwidth.ms.toFixed(3)} ms, ${r.bandwidth.timing})`,
  `f32 matmul: ${r.matmul.gflops.toFixed(1)} GFLOP/s  (${r.matmul.variant} variant, ${r.matmul.n}³, ${r.matmul.ms.toFixed(3)} ms, ${r.matmul.timing})`
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
