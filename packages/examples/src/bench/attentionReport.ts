/**
 * The attention benchmark's report: its JSON document, the printed table and
 * the speed-up chart.
 */
import type { RooflineFigures } from "@canopy/kernels"
import { lineChartSvg } from "../charts/svg.ts"
import type { AttentionSweep, PointResult } from "./attentionSweep.ts"
import type { BenchShape } from "./benchShape.ts"

export interface AttentionReport extends AttentionSweep {
  readonly adapter: string
  readonly software: boolean
  readonly roofline: RooflineFigures
  readonly shape: BenchShape
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
  { title: "hydragen ms", cell: (p) => fixed(3)(p.hydragenMs) },
  { title: "baseline ms", cell: (p) => fixed(3)(p.baselineMs) },
  { title: "speed-up", cell: (p) => `${p.speedup.toFixed(2)}×` },
  { title: "hyd GFLOP/s", cell: (p) => fixed(2)(p.hydragenGflops) },
  { title: "base GFLOP/s", cell: (p) => fixed(2)(p.baselineGflops) },
  { title: "hyd GB/s", cell: (p) => fixed(2)(p.hydragenGBps) },
  { title: "base GB/s", cell: (p) => fixed(2)(p.baselineGBps) },
  { title: "hyd roofline", cell: (p) => percent(p.hydragenRoofline) },
  { title: "base roofline", cell: (p) => percent(p.baselineRoofline) },
  { title: "agree", cell: (p) => (p.agree ? "yes" : `NO (${p.maxRelDiff.toExponential(1)})`) }
]

/** A right-aligned text table of the measured points, then the skipped ones. */
export const formatAttentionTable = (report: AttentionReport): ReadonlyArray<string> => {
  const rows = report.points.map((p) => COLUMNS.map((c) => c.cell(p)))
  const widths = COLUMNS.map((c, i) => Math.max(c.title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padStart(widths[i]!)).join("  ")
  return [
    line(COLUMNS.map((c) => c.title)),
    ...rows.map(line),
    ...report.skipped.map((s) => `skipped batch ${s.batch} prefix ${s.prefix} suffix ${s.suffix}: ${s.reason}`)
  ]
}

/** One line per point while the sweep runs. */
export const formatPointLine = (p: PointResult): string =>
  `batch ${p.batch} prefix ${p.prefix} suffix ${p.suffix}: hydragen ${p.hydragenMs.toFixed(3)} ms, baseline ${p.baselineMs.toFixed(3)} ms, ${p.speedup.toFixed(2)}×`

/** Speed-up against batch size (log x), one series per prefix length (and suffix, when several were swept). */
export const speedupChartSvg = (report: AttentionReport): string => {
  const suffixes = new Set(report.points.map((p) => p.suffix))
  const series = new Map<string, Array<readonly [number, number]>>()
  for (const p of report.points) {
    const name = suffixes.size > 1 ? `prefix ${p.prefix}, suffix ${p.suffix}` : `prefix ${p.prefix}`
    const points = series.get(name) ?? []
    points.push([p.batch, p.speedup])
    series.set(name, points)
  }
  const { heads, kvHeads, headDim } = report.shape
  return lineChartSvg({
    title: `Hydragen over paged decoding: ${heads} heads / ${kvHeads} KV, d ${headDim}${report.software ? " (software adapter)" : ""}`,
    xLabel: "batch size",
    yLabel: "speed-up (baseline ms / hydragen ms)",
    series: [...series].map(([name, points]) => ({ name, points })),
    logX: true
  })
}

/** The chart's default path beside a JSON report: same name, `.svg`. */
export const chartPathFor = (jsonPath: string): string => `${jsonPath.replace(/\.json$/i, "")}.svg`
