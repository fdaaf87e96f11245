/**
 * Decode throughput against batch size and shared prefix length: Hydragen,
 * the per-sequence baseline, and the attention-free ceiling (the same model
 * with attention skipped), on one engine. Each point is one shared prefix with
 * `batch` samples under it decoding `tokens` tokens; only decoding is timed
 * (the prefix is prefilled once and stays cached across the modes).
 *
 * Every mode first decodes once, untimed, on a small point (the first run of
 * each pays for first uses); then each point is decoded `repeats` times by
 * every mode, the modes' order rotating from round to round. Figures are
 * medians, ratios the medians of per-round ratios, each with its range.
 */
import type { AttentionMode, TreeEngine } from "@canopy/runtime"
import { lineChartSvg } from "../charts/svg.ts"
import { pairedRatios, ratioPhrase, type Spread, spreadOf, valueWithRange } from "./figures.ts"

export interface DecodeBenchOptions {
  readonly batches: ReadonlyArray<number>
  readonly prefixes: ReadonlyArray<number>
  /** tokens decoded per sample */
  readonly tokens: number
  readonly modes: ReadonlyArray<AttentionMode>
  /** timed rounds of every mode at each point (default 3) */
  readonly repeats?: number
  readonly seed?: number
  readonly onPoint?: (text: string) => void
}

export interface DecodePoint {
  readonly batch: number
  readonly prefix: number
  readonly mode: AttentionMode
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
  readonly tokens: number
  /** timed rounds per mode and point */
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

export const runDecodeBench = async (engine: TreeEngine, options: DecodeBenchOptions): Promise<ReadonlyArray<DecodePoint>> => {
  const vocab = engine.model.config.vocabSize
  const repeats = Math.max(1, options.repeats ?? 3)
  const decode = (tree: { tokens: ReadonlyArray<number>; samples: number }, mode: AttentionMode, maxTokens: number) =>
    engine.generate({ tree, attention: mode, sampling: { temperature: 1, seed: options.seed ?? 0, maxTokens, ignoreEos: true } })

  // Untimed: the smallest point's shape, a few tokens, in every mode.
  const warm = { tokens: promptTokens(Math.min(...options.prefixes), vocab, 1), samples: Math.min(...options.batches) }
  for (const mode of options.modes) {
    options.onPoint?.(`warm-up ${mode}, untimed`)
    await decode(warm, mode, Math.min(options.tokens, 4))
  }

  const points: Array<DecodePoint> = []
  for (const prefix of options.prefixes) {
    for (const batch of options.batches) {
      // a distinct prompt per point: no point decodes on another's cached suffixes
      const tree = { tokens: promptTokens(prefix, vocab, prefix * 7919 + batch), samples: batch }
      const runs = new Map<AttentionMode, Array<{ tokensPerSecond: number; decodeSeconds: number; steps: number }>>(
        options.modes.map((m) => [m, []])
      )
      for (let round = 0; round < repeats; round++) {
        for (const mode of rotated(options.modes, round)) {
          const r = await decode(tree, mode, options.tokens)
          runs.get(mode)!.push({ tokensPerSecond: r.stats.decodeTokensPerSecond, decodeSeconds: r.stats.decodeSeconds, steps: r.stats.steps })
          options.onPoint?.(
            `batch ${batch} prefix ${prefix} round ${round + 1}/${repeats} ${mode}: ${r.stats.decodeTokensPerSecond.toFixed(1)} tokens/s`
          )
        }
      }
      for (const mode of options.modes) {
        const mine = runs.get(mode)!
        const rate = spreadOf(mine.map((r) => r.tokensPerSecond))
        points.push({
          batch,
          prefix,
          mode,
          tokensPerSecond: rate.median,
          decodeSeconds: spreadOf(mine.map((r) => r.decodeSeconds)).median,
          steps: mine[0]!.steps,
          rounds: mine.map((r) => r.tokensPerSecond)
        })
      }
    }
  }
  return points
}

const find = (points: ReadonlyArray<DecodePoint>, batch: number, prefix: number, mode: AttentionMode) =>
  points.find((p) => p.batch === batch && p.prefix === prefix && p.mode === mode)

/** `a`'s tokens/s over `b`'s, round by round: the median and range of those ratios. */
export const rateRatio = (a: DecodePoint | undefined, b: DecodePoint | undefined): Spread | undefined =>
  a === undefined || b === undefined ? undefined : spreadOf(pairedRatios(a.rounds, b.rounds))

export const formatDecodeTable = (report: DecodeReport): ReadonlyArray<string> => {
  const header = ["batch", "prefix", "hydragen tok/s", "baseline tok/s", "ceiling tok/s", "hydragen/baseline", "hydragen/ceiling"]
  const rows = [...new Set(report.points.map((p) => `${p.prefix}:${p.batch}`))].map((key) => {
    const [prefix, batch] = key.split(":").map(Number) as [number, number]
    const h = find(report.points, batch, prefix, "hydragen")
    const b = find(report.points, batch, prefix, "baseline")
    const c = find(report.points, batch, prefix, "none")
    const rate = (p: DecodePoint | undefined) => (p === undefined ? "-" : valueWithRange(spreadOf(p.rounds), 1))
    const speedUp = rateRatio(h, b)
    const share = rateRatio(h, c)
    return [
      String(batch),
      String(prefix),
      rate(h),
      rate(b),
      rate(c),
      speedUp === undefined ? "-" : ratioPhrase(speedUp, { rounds: false }),
      share === undefined ? "-" : share.n > 1 ? `${(100 * share.median).toFixed(0)}% (${(100 * share.min).toFixed(0)}–${(100 * share.max).toFixed(0)}%)` : `${(100 * share.median).toFixed(0)}%`
    ]
  })
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padStart(widths[i]!)).join("  ")
  const rounds = report.repeats ?? report.points[0]?.rounds.length ?? 1
  return [
    `each point: ${rounds} timed round${rounds === 1 ? "" : "s"} of every mode after an untimed warm-up, the order rotating; ` +
    "medians, with the range over the rounds in brackets; ratios are medians of the per-round ratios",
    line(header),
    ...rows.map(line)
  ]
}

export const decodeChartSvg = (report: DecodeReport): string =>
  lineChartSvg({
    title: `Decode tokens/s by shared prefix P${report.adapter.includes("(software)") ? " (software adapter)" : ""}`,
    subtitle: [
      report.adapter,
      `${report.model}; ${report.tokens} tokens per sample; medians of ${report.repeats ?? report.points[0]?.rounds.length ?? 1} rounds after a warm-up; whiskers: range over the rounds`
    ],
    xLabel: "batch size (samples decoding together)",
    yLabel: "tokens/s",
    logX: true,
    series: [...new Set(report.points.map((p) => `${p.mode}:${p.prefix}`))].map((key) => {
      const [mode, prefix] = key.split(":") as [AttentionMode, string]
      const name = mode === "none" ? "no attention" : mode
      return {
        name: `${name}, P=${prefix}`,
        points: report.points.filter((p) => p.mode === mode && p.prefix === Number(prefix)).map((p) => [p.batch, p.tokensPerSecond] as const),
        ranges: report.points
          .filter((p) => p.mode === mode && p.prefix === Number(prefix) && p.rounds.length > 1)
          .map((p) => [p.batch, Math.min(...p.rounds), Math.max(...p.rounds)] as const)
      }
    })
  })
