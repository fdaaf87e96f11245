/**
 * The attention benchmark's report: its JSON document, the printed table and
 * the speed-up chart.
 */
import type { KvDtype, RooflineFigures } from "@canopy/kernels"
import { lineChartSvg } from "../charts/svg.ts"
import { ratioPhrase, valueWithRange } from "./figures.ts"
import type { AttentionSweep, F32Reference, PointResult, VariantFigures } from "./attentionSweep.ts"
import type { BenchShape } from "./benchShape.ts"

export interface AttentionReport extends AttentionSweep {
  readonly adapter: string
  readonly software: boolean
  readonly roofline: RooflineFigures
  readonly shape: BenchShape
  /** the KV pools' element type; with f16 every point also holds its f32 reference */
  readonly kvDtype: KvDtype
}

interface Column {
  readonly title: string
  readonly cell: (p: PointResult) => string
}

const fixed = (digits: number) => (value: number): string => value.toFixed(digits)
const percent = (fraction: number): string => `${(100 * fraction).toFixed(1)}%`

const COLUMNS: ReadonlyArray<Column> = [
  { title: "batch", cell: (p) => String(p.batch) },
  { title: "prefix", cell: (p) => String(p.prefix) },
  { title: "suffix", cell: (p) => String(p.suffix) },
  { title: "rounds", cell: (p) => String(p.pairs) },
  { title: "hydragen ms (range)", cell: (p) => valueWithRange(p.hydragenRange, 3) },
  { title: "baseline ms (range)", cell: (p) => valueWithRange(p.baselineRange, 3) },
  { title: "hydragen speed-up (range)", cell: (p) => ratioPhrase(p.speedupRange, { rounds: false }) },
  { title: "hyd GFLOP/s", cell: (p) => fixed(2)(p.hydragenGflops) },
  { title: "base GFLOP/s", cell: (p) => fixed(2)(p.baselineGflops) },
  { title: "hyd GB/s", cell: (p) => fixed(2)(p.hydragenGBps) },
  { title: "base GB/s", cell: (p) => fixed(2)(p.baselineGBps) },
  { title: "hyd roofline", cell: (p) => percent(p.hydragenRoofline) },
  { title: "base roofline", cell: (p) => percent(p.baselineRoofline) },
  { title: "agree", cell: (p) => (p.agree ? "yes" : `NO (${p.maxRelDiff.toExponential(1)})`) }
]

/** The f32 reference of an f16 sweep: its times and f16's speed-up over them, per method. */
const F32_COLUMNS: ReadonlyArray<Column> = [
  { title: "f32 hyd ms (range)", cell: (p) => (p.f32 === undefined ? "-" : valueWithRange(p.f32.hydragenRange, 3)) },
  { title: "f32 base ms (range)", cell: (p) => (p.f32 === undefined ? "-" : valueWithRange(p.f32.baselineRange, 3)) },
  { title: "hydragen f16 vs f32 (range)", cell: (p) => (p.f32 === undefined ? "-" : ratioPhrase(p.f32.hydragenF16Speedup, { rounds: false })) },
  { title: "baseline f16 vs f32 (range)", cell: (p) => (p.f32 === undefined ? "-" : ratioPhrase(p.f32.baselineF16Speedup, { rounds: false })) },
  { title: "f16 ≈ f32", cell: (p) => (p.f32 === undefined ? "-" : p.f32.agree ? "yes" : `NO (${p.f32.maxRelDiff.toExponential(1)})`) }
]

/** The further level variants' columns: Hydragen's time with each, its speed-up over the first variant and its agreement. */
const variantColumns = (report: AttentionReport): ReadonlyArray<Column> => {
  const first = report.points[0]?.levelVariant ?? "the first"
  const names = [...new Set(report.points.flatMap((p) => (p.variants ?? []).map((v) => v.levelVariant)))]
  const cell = (name: string, show: (v: VariantFigures) => string) => (p: PointResult): string => {
    const v = p.variants?.find((x) => x.levelVariant === name)
    return v === undefined ? "-" : show(v)
  }
  return names.flatMap((name): ReadonlyArray<Column> => [
    { title: `${name} hyd ms (range)`, cell: cell(name, (v) => valueWithRange(v.range, 3)) },
    { title: `${name} vs ${first} (range)`, cell: cell(name, (v) => ratioPhrase(v.speedup, { rounds: false })) },
    { title: `${name} agrees`, cell: cell(name, (v) => (v.agree ? "yes" : `NO (${v.maxRelDiff.toExponential(1)})`)) }
  ])
}

/** How the figures were taken, printed above the table. */
export const TIMING_NOTE =
  "each point: both methods warmed up, then timed in rounds, each running every method once in rotating order; " +
  "medians, with the range over the rounds in brackets; speed-up = the median of the per-round ratios baseline / hydragen"

/** How the level variants were compared, printed under TIMING_NOTE when a sweep has several. */
export const variantNote = (report: AttentionReport): string =>
  `hydragen columns: the ${report.points[0]?.levelVariant ?? "first"} level kernel; each further level kernel ran Hydragen on the same pools in the same rounds: ` +
  "X vs first = the median of the per-round ratios first ms / X ms; X agrees: its outputs agree with the first's within 1e-3"

/** How an f16 sweep's f32 reference was taken, printed under TIMING_NOTE. */
export const F32_NOTE =
  "KV pools in f16; both methods also ran on f32 pools holding the same values, in the same rounds: " +
  "f16 vs f32 = the median of the per-round ratios f32 ms / f16 ms; f16 ≈ f32: Hydragen's outputs agree within 1e-2"

const hasF32 = (report: AttentionReport): boolean => report.points.some((p) => p.f32 !== undefined)

/** A right-aligned text table of the measured points, then the skipped ones. */
export const formatAttentionTable = (report: AttentionReport): ReadonlyArray<string> => {
  const variants = variantColumns(report)
  const columns = [...COLUMNS, ...variants, ...(hasF32(report) ? F32_COLUMNS : [])]
  const rows = report.points.map((p) => columns.map((c) => c.cell(p)))
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padStart(widths[i]!)).join("  ")
  return [
    TIMING_NOTE,
    ...(variants.length > 0 ? [variantNote(report)] : []),
    ...(hasF32(report) ? [F32_NOTE] : []),
    line(columns.map((c) => c.title)),
    ...rows.map(line),
    ...report.skipped.map((s) => `skipped batch ${s.batch} prefix ${s.prefix} suffix ${s.suffix}: ${s.reason}`)
  ]
}

const f32Phrase = (f32: F32Reference | undefined): string =>
  f32 === undefined ? "" : `; f16 vs f32: hydragen ${ratioPhrase(f32.hydragenF16Speedup, { rounds: false })}, baseline ${ratioPhrase(f32.baselineF16Speedup, { rounds: false })}`

const variantsPhrase = (p: PointResult): string =>
  (p.variants ?? []).map((v) => `; ${v.levelVariant} ${v.ms.toFixed(3)} ms, ${ratioPhrase(v.speedup, { rounds: false })} than ${p.levelVariant}`).join("")

/** One line per point while the sweep runs. */
export const formatPointLine = (p: PointResult): string =>
  `batch ${p.batch} prefix ${p.prefix} suffix ${p.suffix}: hydragen ${p.hydragenMs.toFixed(3)} ms, baseline ${p.baselineMs.toFixed(3)} ms, ` +
  `hydragen ${ratioPhrase(p.speedupRange, { rounds: false })} over ${p.pairs} rounds${variantsPhrase(p)}${f32Phrase(p.f32)}`

const pairCount = (pairs: ReadonlyArray<number>): string => {
  if (pairs.length === 0) return "the"
  const low = Math.min(...pairs)
  const high = Math.max(...pairs)
  return low === high ? String(low) : `${low}–${high}`
}

/** Speed-up against batch size (log x), one series per prefix length (and suffix, when several were swept). */
export const speedupChartSvg = (report: AttentionReport): string => {
  const suffixes = new Set(report.points.map((p) => p.suffix))
  const series = new Map<string, { points: Array<readonly [number, number]>; ranges: Array<readonly [number, number, number]> }>()
  for (const p of report.points) {
    const name = suffixes.size > 1 ? `prefix ${p.prefix}, suffix ${p.suffix}` : `prefix ${p.prefix}`
    const one = series.get(name) ?? { points: [], ranges: [] }
    one.points.push([p.batch, p.speedup])
    if (p.speedupRange !== undefined && p.speedupRange.n > 1) one.ranges.push([p.batch, p.speedupRange.min, p.speedupRange.max])
    series.set(name, one)
  }
  const pairs = report.points.map((p) => p.pairs).filter((n) => n !== undefined)
  const { heads, kvHeads, headDim } = report.shape
  return lineChartSvg({
    title: `Hydragen over paged decoding: ${heads} heads / ${kvHeads} KV, d ${headDim}, ${report.kvDtype} KV${report.software ? " (software adapter)" : ""}`,
    subtitle: [
      report.adapter,
      `Medians of ${pairCount(pairs)} rounds per point (methods in rotating order) after a warm-up; whiskers: range over the rounds`
    ],
    xLabel: "batch size",
    yLabel: "speed-up (baseline ms / hydragen ms)",
    series: [...series].map(([name, { points, ranges }]) => ({ name, points, ranges })),
    reference: { y: 1, label: "1× = same speed; below it Hydragen is slower" },
    logX: true
  })
}

/** The chart's default path beside a JSON report: same name, `.svg`. */
export const chartPathFor = (jsonPath: string): string => `${jsonPath.replace(/\.json$/i, "")}.svg`
