/**
 * Decode throughput against batch size and shared prefix length: Hydragen,
 * the per-sequence baseline, and the attention-free ceiling (the same model
 * with attention skipped), on one engine. Each point is one shared prefix with
 * `batch` samples under it decoding `tokens` tokens; only decoding is timed
 * (the prefix is prefilled once and stays cached across the modes).
 */
import type { AttentionMode, TreeEngine } from "@canopy/runtime"
import { lineChartSvg } from "../charts/svg.ts"

export interface DecodeBenchOptions {
  readonly batches: ReadonlyArray<number>
  readonly prefixes: ReadonlyArray<number>
  /** tokens decoded per sample */
  readonly tokens: number
  readonly modes: ReadonlyArray<AttentionMode>
  readonly seed?: number
  readonly onPoint?: (text: string) => void
}

export interface DecodePoint {
  readonly batch: number
  readonly prefix: number
  readonly mode: AttentionMode
  readonly tokensPerSecond: number
  readonly decodeSeconds: number
  readonly steps: number
}

export interface DecodeReport {
  readonly adapter: string
  readonly model: string
  readonly tokens: number
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

export const runDecodeBench = async (engine: TreeEngine, options: DecodeBenchOptions): Promise<ReadonlyArray<DecodePoint>> => {
  const vocab = engine.model.config.vocabSize
  const points: Array<DecodePoint> = []
  for (const prefix of options.prefixes) {
    for (const batch of options.batches) {
      // a distinct prompt per point: no point decodes on another's cached suffixes
      const tree = { tokens: promptTokens(prefix, vocab, prefix * 7919 + batch), samples: batch }
      for (const mode of options.modes) {
        const r = await engine.generate({
          tree,
          attention: mode,
          sampling: { temperature: 1, seed: options.seed ?? 0, maxTokens: options.tokens, ignoreEos: true }
        })
        const point = {
          batch,
          prefix,
          mode,
          tokensPerSecond: r.stats.decodeTokensPerSecond,
          decodeSeconds: r.stats.decodeSeconds,
          steps: r.stats.steps
        }
        points.push(point)
        options.onPoint?.(`batch ${batch} prefix ${prefix} ${mode}: ${point.tokensPerSecond.toFixed(1)} tokens/s`)
      }
    }
  }
  return points
}

const find = (points: ReadonlyArray<DecodePoint>, batch: number, prefix: number, mode: AttentionMode) =>
  points.find((p) => p.batch === batch && p.prefix === prefix && p.mode === mode)

export const formatDecodeTable = (report: DecodeReport): ReadonlyArray<string> => {
  const header = "batch  prefix  hydragen tok/s  baseline tok/s  ceiling tok/s  hydragen/baseline  hydragen/ceiling"
  const rows = [...new Set(report.points.map((p) => `${p.prefix}:${p.batch}`))].map((key) => {
    const [prefix, batch] = key.split(":").map(Number) as [number, number]
    const h = find(report.points, batch, prefix, "hydragen")?.tokensPerSecond
    const b = find(report.points, batch, prefix, "baseline")?.tokensPerSecond
    const c = find(report.points, batch, prefix, "none")?.tokensPerSecond
    const f = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(1))
    const ratio = (x: number | undefined, y: number | undefined, unit: string) =>
      x === undefined || y === undefined ? "-" : `${(x / y).toFixed(2)}${unit}`
    return [
      String(batch).padStart(5), String(prefix).padStart(7), f(h).padStart(15), f(b).padStart(15), f(c).padStart(14),
      ratio(h, b, "×").padStart(18), ratio(h !== undefined && c !== undefined ? 100 * h : undefined, c, "%").padStart(17)
    ].join(" ")
  })
  return [header, ...rows]
}

export const decodeChartSvg = (report: DecodeReport): string =>
  lineChartSvg({
    title: `Decode tokens/s by shared prefix P${report.adapter.includes("(software)") ? " (software adapter)" : ""}`,
    xLabel: "batch size (samples decoding together)",
    yLabel: "tokens/s",
    logX: true,
    series: [...new Set(report.points.map((p) => `${p.mode}:${p.prefix}`))].map((key) => {
      const [mode, prefix] = key.split(":") as [AttentionMode, string]
      const name = mode === "none" ? "no attention" : mode
      return {
        name: `${name}, P=${prefix}`,
        points: report.points.filter((p) => p.mode === mode && p.prefix === Number(prefix)).map((p) => [p.batch, p.tokensPerSecond] as const)
      }
    })
  })
