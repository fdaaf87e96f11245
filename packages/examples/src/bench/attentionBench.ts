/**
 * The attention benchmark end to end, shared by `canopy bench attention` and
 * the GPU-machine entry: check the shape against the device, take the
 * roofline (measured now or given), sweep with a progress line, and write the
 * JSON report and chart.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import {
  describeAdapter, type GpuHandle, type KvDtype, type LevelVariant, measureRoofline, type RooflineFigures, type TimeGpuOptions
} from "@canopy/kernels"
import { type AttentionReport, formatPointLine, speedupChartSvg } from "./attentionReport.ts"
import { runAttentionSweep } from "./attentionSweep.ts"
import type { SweepPoint } from "./attentionWorkload.ts"
import { type BenchShape, shapeProblems } from "./benchShape.ts"
import { progressLine } from "../terminal/progressLine.ts"
import { defaultRooflineOptions } from "./rooflineReport.ts"

export interface AttentionBenchOptions {
  readonly shape: BenchShape
  readonly points: ReadonlyArray<SweepPoint>
  /** measured before the sweep when absent */
  readonly roofline?: RooflineFigures | undefined
  /** timed runs per method and point (default 7); the median is reported */
  readonly repeats?: number
  /** the KV pools' element type (default "f32"); "f16" measures f32 pools alongside, in the same rounds */
  readonly kvDtype?: KvDtype
  /** where Hydragen attends suffix nodes: the decode kernel (default) or the level kernel */
  readonly suffixKernel?: "decode" | "level"
  /** Hydragen's level-kernel variants (default: DEFAULT_LEVEL_VARIANT alone): the first gives the hydragen figures, the others are timed beside it */
  readonly levelVariants?: ReadonlyArray<LevelVariant>
  /** progress on standard error (default true) */
  readonly progress?: boolean
}

/**
 * On the software adapter one baseline run of a large point takes a second:
 * one warm-up, and the alternating repeats stop after 3 s once three pairs are
 * in. On a GPU the full count, within 20 s per point.
 */
const sweepTiming = (software: boolean, repeats: number): TimeGpuOptions =>
  software ? { warmup: 1, repeats, budgetMs: 3000 } : { warmup: 2, repeats, budgetMs: 20_000 }

export const runAttentionBench = async (gpu: GpuHandle, options: AttentionBenchOptions): Promise<AttentionReport> => {
  const problems = shapeProblems(options.shape, gpu.limits)
  if (problems.length > 0) throw new RangeError(problems.join("; "))
  const line = options.progress === false ? undefined : progressLine()
  try {
    if (options.roofline === undefined) line?.update("measuring the roofline (copy bandwidth, f32 matmul)…")
    const roofline = options.roofline ?? (await measureRoofline(gpu.device, defaultRooflineOptions(gpu.adapter.software)))
    const sweep = await runAttentionSweep(gpu.device, {
      shape: options.shape,
      points: options.points,
      roofline,
      kvDtype: options.kvDtype ?? "f32",
      ...(options.suffixKernel !== undefined ? { suffixKernel: options.suffixKernel } : {}),
      ...(options.levelVariants !== undefined ? { levelVariants: options.levelVariants } : {}),
      timing: sweepTiming(gpu.adapter.software, options.repeats ?? 7),
      onProgress: (index, total, point, outcome) => {
        const at = `[${index + 1}/${total}]`
        if (outcome === undefined) line?.update(`${at} batch ${point.batch} prefix ${point.prefix} suffix ${point.suffix}: measuring…`)
        else if (outcome.kind === "skipped") line?.note(`${at} skipped batch ${point.batch} prefix ${point.prefix} suffix ${point.suffix}: ${outcome.skipped.reason}`)
        else if (!outcome.result.agree) {
          line?.note(`${at} HYDRAGEN AND BASELINE DISAGREE: relative difference ${outcome.result.maxRelDiff.toExponential(2)} at ${formatPointLine(outcome.result)}`)
        } else if (outcome.result.variants?.some((v) => !v.agree)) {
          line?.note(`${at} LEVEL VARIANTS DISAGREE at ${formatPointLine(outcome.result)}`)
        } else if (outcome.result.f32?.agree === false) {
          line?.note(`${at} F16 AND F32 POOLS DISAGREE: relative difference ${outcome.result.f32.maxRelDiff.toExponential(2)} at ${formatPointLine(outcome.result)}`)
        } else line?.update(`${at} ${formatPointLine(outcome.result)}`)
      }
    })
    return { adapter: describeAdapter(gpu.adapter), software: gpu.adapter.software, roofline, shape: options.shape, kvDtype: options.kvDtype ?? "f32", ...sweep }
  } finally {
    line?.end()
  }
}

const writeText = async (path: string, text: string): Promise<void> => {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, text)
}

export const writeAttentionReport = async (report: AttentionReport, paths: { readonly json?: string | undefined; readonly svg?: string | undefined }): Promise<void> => {
  if (paths.json !== undefined) await writeText(paths.json, `${JSON.stringify(report, null, 2)}\n`)
  if (paths.svg !== undefined) await writeText(paths.svg, speedupChartSvg(report))
}

/** Points where the two methods, the level variants, or the f16 and f32 pools disagreed: a benchmark of a wrong kernel must not pass quietly. */
export const disagreements = (report: AttentionReport): number =>
  report.points.filter((p) => !p.agree || p.f32?.agree === false || p.variants?.some((v) => !v.agree) === true).length
