/**
 * Decode throughput against batch size and shared prefix length: Hydragen,
 * the per-sequence baseline, and the attention-free ceiling (the same model
 * with attention skipped), on one engine per KV dtype over the same model.
 * Each point is one shared prefix with `batch` samples under it decoding
 * `tokens` tokens; only decoding is timed (the prefix is prefilled once per
 * engine and stays cached across the modes). With f16 KV, Hydragen and the
 * baseline also decode on an f32 KV cache in the same rounds: f16's speed-up
 * over f32 comes from one run.
 *
 * With the former kernels (formerKernels: the stacked level tile and the
 * device family's default matmul, as Canopy ran before its tuner), Hydragen
 * and the baseline decode once more per round on an engine pinned to them:
 * the tuned kernels' speed-up over them comes from the same run.
 *
 * Every variant (mode, KV dtype, kernels) first decodes once, untimed, on a small
 * point (the first run of each pays for first uses); then each point is
 * decoded `repeats` times by every variant, their order rotating from round
 * to round. Figures are medians, ratios the medians of per-round ratios, each
 * with its range.
 */
import { chooseLevelTile, defaultMatmulChoice, defaultVariant, type KvDtype } from "@canopy/kernels"
import type { AttentionMode, PinnedKernels, TreeEngine } from "@canopy/runtime"
import { lineChartSvg } from "../charts/svg.ts"
import { pairedRatios, ratioPhrase, type Spread, spreadOf, valueWithRange } from "./figures.ts"

/** The kernels an engine runs: as its tuner chose them, or pinned to the former ones (formerKernels). */
export type KernelSet = "tuned" | "former"

/** One thing timed at every point: an attention mode on an engine whose KV cache holds `kvDtype`, running `kernels`. */
export interface DecodeVariant {
  readonly mode: AttentionMode
  readonly kvDtype: KvDtype
  readonly kernels: KernelSet
}

/**
 * The variants for `kvDtype`: every mode on it, for f16 Hydragen and the
 * baseline on f32 too (the ceiling reads no KV), and with `former` both on
 * the former kernels.
 */
export const decodeVariants = (kvDtype: KvDtype, former = false): ReadonlyArray<DecodeVariant> => {
  const attending = ["hydragen", "baseline"] as const
  return [
    ...(["hydragen", "baseline", "none"] as const).map((mode) => ({ mode, kvDtype, kernels: "tuned" as const })),
    ...(kvDtype === "f16" ? attending.map((mode) => ({ mode, kvDtype: "f32" as const, kernels: "tuned" as const })) : []),
    ...(former ? attending.map((mode) => ({ mode, kvDtype, kernels: "former" as const })) : [])
  ]
}

/**
 * The kernels Canopy ran before its tuner, pinned: the stacked level tile
 * and the device family's default matmul (a GPU's GEMV and 64×64 tiled GEMM,
 * a software adapter's register tiles).
 */
export const formerKernels = (device: GPUDevice, headDim: number): PinnedKernels => ({
  levelTile: chooseLevelTile(headDim, device.limits, "stacked"),
  matmul: defaultMatmulChoice(defaultVariant(device))
})

export interface DecodeBenchOptions {
  readonly batches: ReadonlyArray<number>
  readonly prefixes: ReadonlyArray<number>
  /** tokens decoded per sample */
  readonly tokens: number
  readonly variants: ReadonlyArray<DecodeVariant>
  /** timed rounds of every variant at each point (default 3) */
  readonly repeats?: number
  readonly seed?: number
  readonly onPoint?: (text: string) => void
}

export interface DecodePoint {
  readonly batch: number
  readonly prefix: number
  readonly mode: AttentionMode
  /** the KV cache's element type of the engine that decoded */
  readonly kvDtype: KvDtype
  /** what its kernels were (reports before there was a choice hold none: tuned) */
  readonly kernels?: KernelSet
  /** medians over the rounds */
  readonly tokensPerSecond: number
  readonly decodeSeconds: number
  readonly steps: number
  /** each round's decode tokens/s, in round order */
  readonly rounds: ReadonlyArray<number>
}

export interface DecodeReport {
  readonly adapter: string
  readonly model: string
  /** the KV dtype measured; with f16 the points hold Hydragen's and the baseline's f32 reference too */
  readonly kvDtype: KvDtype
  readonly tokens: number
  /** timed rounds per variant and point */
  readonly repeats?: number
  readonly points: ReadonlyArray<DecodePoint>
}

/** A prefix of pseudo-random token ids (seeded, so every mode sees the same prompt). */
const promptTokens = (length: number, vocab: number, seed: number): Array<number> => {
  let x = (seed * 2654435761) >>> 0 || 1
  return Array.from({ length }, () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) % vocab
  })
}

const rotated = <A>(xs: ReadonlyArray<A>, by: number): ReadonlyArray<A> => xs.map((_, i) => xs[(i + by) % xs.length]!)

const variantName = (v: DecodeVariant): string => `${v.mode} ${v.kvDtype}${v.kernels === "former" ? " former kernels" : ""}`

export const runDecodeBench = async (
  engineFor: (variant: DecodeVariant) => TreeEngine, options: DecodeBenchOptions
): Promise<ReadonlyArray<DecodePoint>> => {
  const repeats = Math.max(1, options.repeats ?? 3)
  const decode = (tree: { tokens: ReadonlyArray<number>; samples: number }, v: DecodeVariant, maxTokens: number) =>
    engineFor(v).generate({
      tree, attention: v.mode, sampling: { temperature: 1, seed: options.seed ?? 0, maxTokens, ignoreEos: true }
    })
  const vocab = engineFor(options.variants[0]!).model.config.vocabSize

  // Untimed: the smallest point's shape, a few tokens, in every variant.
  const warm = { tokens: promptTokens(Math.min(...options.prefixes), vocab, 1), samples: Math.min(...options.batches) }
  for (const v of options.variants) {
    options.onPoint?.(`warm-up ${variantName(v)}, untimed`)
    await decode(warm, v, Math.min(options.tokens, 4))
  }

  const points: Array<DecodePoint> = []
  for (const prefix of options.prefixes) {
    for (const batch of options.batches) {
      // a distinct prompt per point: no point decodes on another's cached suffixes
      const tree = { tokens: promptTokens(prefix, vocab, prefix * 7919 + batch), samples: batch }
      const runs = options.variants.map((): Array<{ tokensPerSecond: number; decodeSeconds: number; steps: number }> => [])
      for (let round = 0; round < repeats; round++) {
        for (const i of rotated(options.variants.map((_, i) => i), round)) {
          const v = options.variants[i]!
          const r = await decode(tree, v, options.tokens)
          runs[i]!.push({ tokensPerSecond: r.stats.decodeTokensPerSecond, decodeSeconds: r.stats.decodeSeconds, steps: r.stats.steps })
          options.onPoint?.(
            `batch ${batch} prefix ${prefix} round ${round + 1}/${repeats} ${variantName(v)}: ${r.stats.decodeTokensPerSecond.toFixed(1)} tokens/s`
          )
        }
      }
      options.variants.forEach((v, i) => {
        const mine = runs[i]!
        points.push({
          batch,
          prefix,
          mode: v.mode,
          kvDtype: v.kvDtype,
          kernels: v.kernels,
          tokensPerSecond: spreadOf(mine.map((r) => r.tokensPerSecond)).median,
          decodeSeconds: spreadOf(mine.map((r) => r.decodeSeconds)).median,
          steps: mine[0]!.steps,
          rounds: mine.map((r) => r.tokensPerSecond)
        })
      })
    }
  }
  return points
}

/** A point's kernels: reports from before there was a choice hold none, and ran the tuned ones. */
const kernelsOf = (p: DecodePoint): KernelSet => p.kernels ?? "tuned"

/** Whether `p` is of the variant `v`. */
const isOf = (p: DecodePoint, v: DecodeVariant): boolean => p.mode === v.mode && p.kvDtype === v.kvDtype && kernelsOf(p) === v.kernels

const find = (points: ReadonlyArray<DecodePoint>, batch: number, prefix: number, variant: DecodeVariant) =>
  points.find((p) => p.batch === batch && p.prefix === prefix && isOf(p, variant))

/** `a`'s tokens/s over `b`'s, round by round: the median and range of those ratios. */
export const rateRatio = (a: DecodePoint | undefined, b: DecodePoint | undefined): Spread | undefined =>
  a === undefined || b === undefined ? undefined : spreadOf(pairedRatios(a.rounds, b.rounds))

const percentWithRange = (s: Spread): string =>
  s.n > 1 ? `${(100 * s.median).toFixed(0)}% (${(100 * s.min).toFixed(0)}–${(100 * s.max).toFixed(0)}%)` : `${(100 * s.median).toFixed(0)}%`

type PointAt = (mode: AttentionMode, kvDtype: KvDtype, kernels?: KernelSet) => DecodePoint | undefined

interface DecodeColumn {
  readonly title: string
  /** the cell of one point, the report's KV dtype being `kvDtype` */
  readonly cell: (at: PointAt, kvDtype: KvDtype) => string
}

const rate = (p: DecodePoint | undefined) => (p === undefined ? "-" : valueWithRange(spreadOf(p.rounds), 1))
const ratio = (r: Spread | undefined) => (r === undefined ? "-" : ratioPhrase(r, { rounds: false }))

const DECODE_COLUMNS: ReadonlyArray<DecodeColumn> = [
  { title: "hydragen tok/s", cell: (at, d) => rate(at("hydragen", d)) },
  { title: "baseline tok/s", cell: (at, d) => rate(at("baseline", d)) },
  { title: "ceiling tok/s", cell: (at, d) => rate(at("none", d)) },
  { title: "hydragen/baseline", cell: (at, d) => ratio(rateRatio(at("hydragen", d), at("baseline", d))) },
  {
    title: "hydragen/ceiling",
    cell: (at, d) => {
      const share = rateRatio(at("hydragen", d), at("none", d))
      return share === undefined ? "-" : percentWithRange(share)
    }
  }
]

/** With f16 KV: the f32 cache's rates and f16's speed-up over them. */
const F32_DECODE_COLUMNS: ReadonlyArray<DecodeColumn> = [
  { title: "f32 hydragen tok/s", cell: (at) => rate(at("hydragen", "f32")) },
  { title: "f32 baseline tok/s", cell: (at) => rate(at("baseline", "f32")) },
  { title: "hydragen f16 vs f32", cell: (at, d) => ratio(rateRatio(at("hydragen", d), at("hydragen", "f32"))) },
  { title: "baseline f16 vs f32", cell: (at, d) => ratio(rateRatio(at("baseline", d), at("baseline", "f32"))) }
]

/** With the former kernels: the tuned kernels' speed-up over them. */
const FORMER_DECODE_COLUMNS: ReadonlyArray<DecodeColumn> = [
  { title: "hydragen tuned vs former", cell: (at, d) => ratio(rateRatio(at("hydragen", d), at("hydragen", d, "former"))) },
  { title: "baseline tuned vs former", cell: (at, d) => ratio(rateRatio(at("baseline", d), at("baseline", d, "former"))) }
]

/** How the figures were taken, printed above the table. */
const timingNote = (rounds: number): string =>
  `each point: ${rounds} timed round${rounds === 1 ? "" : "s"} of every variant after an untimed warm-up, the order rotating; ` +
  "medians, with the range over the rounds in brackets; ratios are medians of the per-round ratios"

export const formatDecodeTable = (report: DecodeReport): ReadonlyArray<string> => {
  const withF32 = report.kvDtype !== "f32" && report.points.some((p) => p.kvDtype === "f32")
  const withFormer = report.points.some((p) => p.kernels === "former")
  const columns = [...DECODE_COLUMNS, ...(withF32 ? F32_DECODE_COLUMNS : []), ...(withFormer ? FORMER_DECODE_COLUMNS : [])]
  const header = ["batch", "prefix", ...columns.map((c) => c.title)]
  const rows = [...new Set(report.points.map((p) => `${p.prefix}:${p.batch}`))].map((key) => {
    const [prefix, batch] = key.split(":").map(Number) as [number, number]
    const at: PointAt = (mode, kvDtype, kernels = "tuned") => find(report.points, batch, prefix, { mode, kvDtype, kernels })
    return [String(batch), String(prefix), ...columns.map((c) => c.cell(at, report.kvDtype))]
  })
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padStart(widths[i]!)).join("  ")
  return [
    timingNote(report.repeats ?? report.points[0]?.rounds.length ?? 1),
    ...(withF32 ? [`KV cache in ${report.kvDtype}; Hydragen and the baseline also decoded on an f32 KV cache in the same rounds (f16 vs f32: the tokens/s ratio)`] : []),
    ...(withFormer ? ["Hydragen and the baseline also decoded on the former kernels (the stacked level tile, the default matmul) in the same rounds"] : []),
    line(header),
    ...rows.map(line)
  ]
}

export const decodeChartSvg = (report: DecodeReport): string =>
  lineChartSvg({
    title: `Decode tokens/s by shared prefix P, ${report.kvDtype} KV${report.adapter.includes("(software)") ? " (software adapter)" : ""}`,
    subtitle: [
      report.adapter,
      `${report.model}; ${report.tokens} tokens per sample; medians of ${report.repeats ?? report.points[0]?.rounds.length ?? 1} rounds after a warm-up; whiskers: range over the rounds`
    ],
    xLabel: "batch size (samples decoding together)",
    yLabel: "tokens/s",
    logX: true,
    series: [...new Set(report.points.map((p) => `${p.mode}:${p.kvDtype}:${kernelsOf(p)}:${p.prefix}`))].map((key) => {
      const [mode, kvDtype, kernels, prefix] = key.split(":") as [AttentionMode, KvDtype, KernelSet, string]
      const base = mode === "none" ? "no attention" : kvDtype === report.kvDtype ? mode : `${mode} (${kvDtype} KV)`
      const name = kernels === "former" ? `${base}, former kernels` : base
      const mine = report.points.filter((p) => isOf(p, { mode, kvDtype, kernels }) && p.prefix === Number(prefix))
      return {
        name: `${name}, P=${prefix}`,
        points: mine.map((p) => [p.batch, p.tokensPerSecond] as const),
        ranges: mine.filter((p) => p.rounds.length > 1).map((p) => [p.batch, Math.min(...p.rounds), Math.max(...p.rounds)] as const)
      }
    })
  })
