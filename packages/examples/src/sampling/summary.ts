/**
 * The few lines a finished run prints: where its files are, its throughput,
 * and how tree-shared Hydragen decoding compared with the other modes, each
 * figure with its range over the timed rounds.
 */
import { pairedRatios, ratioPhrase, spreadOf, valueWithRange } from "../bench/figures.ts"
import type { ModeRun, PipelineResult } from "./pipeline.ts"

/** This mode's speed-up over `other` in a phase: the median of the per-round ratios, with their range. */
const speedUp = (mine: ModeRun, other: ModeRun, phase: "totalSeconds" | "decodeSeconds") =>
  spreadOf(pairedRatios(other.rounds.map((r) => r[phase]), mine.rounds.map((r) => r[phase])))

export const summaryLines = (result: PipelineResult): Array<string> => {
  const [first, ...others] = result.modes
  const lines = [
    `model:   ${result.model}`,
    `adapter: ${result.adapter}`,
    `samples: ${result.records.length} (${result.report.problems} problems × ${result.report.samplesPerProblem}) → ${result.samplesPath}`,
    `report:  ${result.reportPath}${result.chartPaths.length > 0 ? ` (charts: ${result.chartPaths.join(", ")})` : ""}`
  ]
  if (result.modes.length > 1) {
    lines.push(
      `timing:  ${result.repeats} timed round${result.repeats === 1 ? "" : "s"} per mode after an untimed warm-up of each, ` +
        `the order rotating; medians, with the range over the rounds in brackets`
    )
  }
  for (const { mode, stats, seconds, prefillSeconds, decodeSeconds } of result.modes) {
    lines.push(
      `${mode.name}: ${valueWithRange(seconds, 1, " s")} in all; prefill of ${stats.prefillTokens} tokens ${valueWithRange(prefillSeconds, 1, " s")}, ` +
        `decode ${valueWithRange(decodeSeconds, 1, " s")}; ${stats.generatedTokens} tokens, ` +
        `${stats.tokensPerSecond.toFixed(1)} tokens/s overall, ${stats.decodeTokensPerSecond.toFixed(1)} decoding`
    )
  }
  if (first !== undefined) {
    const rounds = result.repeats === 1 ? "in its run" : `in all ${result.repeats} rounds`
    for (const other of others) {
      lines.push(
        `${first.mode.name} vs ${other.mode.name}: overall ${ratioPhrase(speedUp(first, other, "totalSeconds"))}; ` +
          `decoding ${ratioPhrase(speedUp(first, other, "decodeSeconds"))}; ` +
          `${other.agreeing}/${result.records.length} samples identical ${rounds}`
      )
    }
  }
  const pass = result.passAtK
  if (pass !== undefined) {
    lines.push(`pass@k: ${pass.ks.map((k, i) => `pass@${k} ${((pass.overall[i] ?? 0) * 100).toFixed(1)}%`).join(", ")}`)
  }
  return lines
}
