/**
 * The few lines a finished run prints: where its files are, its throughput,
 * and how much faster tree-shared Hydragen decoding was than the other modes.
 */
import type { PipelineResult } from "./pipeline.ts"

const ratio = (slow: number, fast: number): string => (fast > 0 ? `${(slow / fast).toFixed(2)}×` : "—")

export const summaryLines = (result: PipelineResult): Array<string> => {
  const [first, ...others] = result.modes
  const lines = [
    `model:   ${result.model}`,
    `adapter: ${result.adapter}`,
    `samples: ${result.records.length} (${result.report.problems} problems × ${result.report.samplesPerProblem}) → ${result.samplesPath}`,
    `report:  ${result.reportPath}${result.chartPaths.length > 0 ? ` (chart: ${result.chartPaths.join(", ")})` : ""}`
  ]
  for (const { mode, stats } of result.modes) {
    lines.push(
      `${mode.name}: ${stats.totalSeconds.toFixed(1)} s (prefill ${stats.prefillTokens} tokens in ${stats.prefillSeconds.toFixed(1)} s, ` +
        `decode ${stats.decodeSeconds.toFixed(1)} s), ${stats.generatedTokens} tokens, ` +
        `${stats.tokensPerSecond.toFixed(1)} tokens/s overall, ${stats.decodeTokensPerSecond.toFixed(1)} decoding`
    )
  }
  if (first !== undefined) {
    for (const other of others) {
      lines.push(
        `${first.mode.name} vs ${other.mode.name}: ${ratio(other.stats.totalSeconds, first.stats.totalSeconds)} faster overall, ` +
          `${ratio(other.stats.decodeSeconds, first.stats.decodeSeconds)} decoding; ` +
          `${other.agreeing}/${result.records.length} samples identical`
      )
    }
  }
  const pass = result.passAtK
  if (pass !== undefined) {
    lines.push(`pass@k: ${pass.ks.map((k, i) => `pass@${k} ${((pass.overall[i] ?? 0) * 100).toFixed(1)}%`).join(", ")}`)
  }
  return lines
}
