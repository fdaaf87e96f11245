/**
 * Collecting a run into an output folder, for `canopy collect` and for
 * `canopy sample --queue` once its run is done: the samples, the report and,
 * when the run asked for it, pass@k on the problems' tests.
 */
import { collectRun } from "@canopy/queue"
import { Console, Effect } from "effect"
import { BUILTIN_PROBLEMS } from "../pipeline/data/builtin-problems.ts"
import { type Problem, readProblemsFile } from "../pipeline/problems.ts"
import { type RunOutputs, writeRunOutputs } from "./outputs.ts"
import { submissionOf } from "./submit.ts"

export interface CollectOptions {
  readonly outDir: string
  /** evaluate even when the run did not ask to */
  readonly evaluate?: boolean
  /** the problems to evaluate on (default: the run's problem file, or the built-in set) */
  readonly problems?: ReadonlyArray<Problem>
  readonly problemsSource?: string
}

export const summaryOf = (run: string, outputs: RunOutputs, workers: number): Array<string> => {
  const [mode] = outputs.report.modes
  const lines = [
    `run:     ${run} (${workers} worker${workers === 1 ? "" : "s"})`,
    `model:   ${outputs.report.model}`,
    `adapter: ${outputs.report.adapter}`,
    `samples: ${outputs.records.length} (${outputs.report.problems} problems × ${outputs.report.samplesPerProblem}) → ${outputs.samplesPath}`,
    `report:  ${outputs.reportPath}${outputs.chartPaths.length > 0 ? ` (charts: ${outputs.chartPaths.join(", ")})` : ""}`
  ]
  if (mode !== undefined) {
    lines.push(
      `${mode.name}: ${mode.seconds.toFixed(1)} s from the first job to the last; ${mode.tokens} tokens, ${mode.tokensPerSecond.toFixed(1)} tokens/s ` +
        `over all workers; prefilled ${mode.prefillTokens} of ${mode.promptTokens} prompt tokens`
    )
  }
  const pass = outputs.passAtK
  if (pass !== undefined) lines.push(`pass@k: ${pass.ks.map((k, i) => `pass@${k} ${((pass.overall[i] ?? 0) * 100).toFixed(1)}%`).join(", ")}`)
  return lines
}

export const collectAndWrite = (run: string, options: CollectOptions) =>
  Effect.gen(function*() {
    const collected = yield* collectRun(run)
    const submission = submissionOf(collected.run)
    const evaluate = options.evaluate === true || submission.evaluate
    const source = options.problemsSource ?? submission.problemsFile ?? "the built-in problems"
    const problems = !evaluate
      ? undefined
      : options.problems ?? (submission.problemsFile !== undefined ? yield* readProblemsFile(submission.problemsFile) : BUILTIN_PROBLEMS)
    const outputs = yield* writeRunOutputs(collected, {
      outDir: options.outDir,
      ...(problems !== undefined ? { evaluateOn: problems } : {}),
      problemsSource: source
    })
    const workers = new Set(collected.jobs.map((j) => j.worker)).size
    yield* Console.log(["", ...summaryOf(run, outputs, workers)].join("\n"))
    return outputs
  })
