/**
 * A collected run's outputs, the same files a local run writes into its
 * folder: samples.jsonl (problem by problem, sample by sample), report.md
 * with its charts, and pass@k when evaluated.
 *
 * Evaluation runs here, on the machine that collects, not on the workers:
 * it needs the problems' tests, which stay in the problem file instead of
 * going to Redis and to every GPU machine; the generated programs run under
 * the evaluator's isolation on one machine chosen for it rather than beside
 * every engine; and the verdicts come out as a local run's do, from the same
 * code on the same samples. Evaluating a run again is one more `collect`.
 */
import type { CollectedRun, JobRecord } from "@canopy/queue"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { type EvaluationError, type EvaluatorOptions, type EvaluatorSetupError, makeEvaluator } from "../pipeline/evaluate.ts"
import type { PassAtKSummary } from "../pipeline/passAtK.ts"
import type { Problem } from "../pipeline/problems.ts"
import { MODE_NAMES, type ModeResult, type RunReport, writeReport } from "../pipeline/report.ts"
import { formatSamplesJsonl, type SampleRecord, sampleRecord } from "../pipeline/samples.ts"
import { OutputError, type ScoredSamples, scoreSamples, workloadText } from "../sampling/pipeline.ts"
import { InputFileError } from "../cli/errors.ts"

export interface OutputOptions {
  readonly outDir: string
  /** the run's problems with their tests, to evaluate the samples on; absent: no evaluation */
  readonly evaluateOn?: ReadonlyArray<Problem>
  readonly problemsSource?: string
  readonly evaluator?: EvaluatorOptions
}

export interface RunOutputs {
  readonly samplesPath: string
  readonly reportPath: string
  readonly chartPaths: ReadonlyArray<string>
  readonly records: ReadonlyArray<SampleRecord>
  readonly report: RunReport
  readonly passAtK?: PassAtKSummary
}

/** The run's problems, looked up by id in the problems given to evaluate on. */
const problemsOf = (collected: CollectedRun, given: ReadonlyArray<Problem>, source: string): Effect.Effect<Array<Problem>, InputFileError> => {
  const byId = new Map(given.map((p) => [p.id, p]))
  const missing = collected.problems.find(({ problem }) => !byId.has(problem.id))
  return missing === undefined
    ? Effect.succeed(collected.problems.map(({ problem }) => byId.get(problem.id)!))
    : Effect.fail(new InputFileError({ flag: "problems", path: source, problem: `has no problem ${JSON.stringify(missing.problem.id)}, which the run sampled` }))
}

/** The run as one mode of a report: wall time from its first job's start to its last job's end; prefill and decode summed over jobs. */
const modeOf = (jobs: ReadonlyArray<JobRecord>): ModeResult => {
  const sum = (pick: (j: JobRecord) => number) => jobs.reduce((n, j) => n + pick(j), 0)
  const start = Math.min(...jobs.map((j) => j.startedAt))
  const end = Math.max(...jobs.map((j) => j.finishedAt))
  const seconds = jobs.length > 0 ? (end - start) / 1000 : 0
  const tokens = sum((j) => j.generatedTokens)
  const decodeSeconds = sum((j) => j.decodeSeconds)
  return {
    name: MODE_NAMES.tree,
    seconds,
    tokens,
    tokensPerSecond: seconds > 0 ? tokens / seconds : 0,
    prefillSeconds: sum((j) => j.prefillSeconds),
    decodeSeconds,
    prefillTokens: sum((j) => j.prefillTokens),
    promptTokens: sum((j) => j.promptTokens),
    decodeTokensPerSecond: decodeSeconds > 0 ? tokens / decodeSeconds : 0
  }
}

/** Generated tokens so far at seconds since the first job started, one point per job as it ended. */
const timelineOf = (jobs: ReadonlyArray<JobRecord>): Array<readonly [number, number]> => {
  const sorted = [...jobs].sort((a, b) => a.finishedAt - b.finishedAt)
  const start = Math.min(...jobs.map((j) => j.startedAt))
  let tokens = 0
  return [[0, 0], ...sorted.map((j): readonly [number, number] => [(j.finishedAt - start) / 1000, (tokens += j.generatedTokens)])]
}

const notesOf = (collected: CollectedRun): Array<string> => {
  const s = collected.run.sampling
  const byWorker = new Map<string, { jobs: number; samples: number; engine: string }>()
  for (const j of collected.jobs) {
    const w = byWorker.get(j.worker) ?? { jobs: 0, samples: 0, engine: j.engine }
    byWorker.set(j.worker, { ...w, jobs: w.jobs + 1, samples: w.samples + j.written })
  }
  return [
    `Sampling: temperature ${s.temperature ?? "default"}, top-k ${s.topK ?? "off"}, top-p ${s.topP ?? "off"}, ` +
    `seed ${s.seed ?? 0} (each problem's own seed derived from it and the problem's id), at most ${s.maxTokens ?? "default"} tokens per sample.`,
    `Distributed run ${collected.run.id}: ${collected.run.jobs} job${collected.run.jobs === 1 ? "" : "s"} of up to ${collected.run.blockSize} ` +
    `sample${collected.run.blockSize === 1 ? "" : "s"} over ${byWorker.size} worker${byWorker.size === 1 ? "" : "s"}: ` +
    [...byWorker].map(([id, w]) => `${id} (${w.engine}) ${w.jobs} jobs, ${w.samples} samples`).join("; ") + ".",
    "Time is the wall time from the run's first job starting to its last one ending; prefill and decode times are summed over " +
    "the jobs, which overlap on a worker and across workers, so they can exceed it."
  ]
}

/** The run's samples as samples.jsonl lines, problem by problem, with their verdicts when evaluated. */
const recordsOf = (collected: CollectedRun, scored: ScoredSamples | undefined): Array<SampleRecord> => {
  const records: Array<SampleRecord> = []
  for (const { problem, samples } of collected.problems) {
    samples.forEach((s, sample) => {
      const evaluation = scored?.evaluations[records.length]
      records.push(sampleRecord({
        problemId: problem.id, sample, text: s.text, tokens: s.tokens, finishReason: s.finishReason, ...(evaluation !== undefined ? { evaluation } : {})
      }))
    })
  }
  return records
}

const reportOf = (collected: CollectedRun, scored: ScoredSamples | undefined): RunReport => {
  const run = collected.run
  return {
    model: run.model,
    adapter: [...new Set(collected.jobs.map((j) => j.engine))].join("; "),
    problems: run.problems,
    samplesPerProblem: run.samplesPerProblem,
    workload: workloadText({ problems: collected.problems, samplesPerProblem: run.samplesPerProblem, sampling: run.sampling, fewShot: collected.prefix }),
    modes: [modeOf(collected.jobs)],
    timeline: timelineOf(collected.jobs),
    ...(scored !== undefined ? { passAtK: scored.passAtK, isolation: scored.isolation } : {}),
    samplesPath: "samples.jsonl",
    startedAt: new Date(run.createdAt).toISOString(),
    notes: notesOf(collected)
  }
}

const score = (collected: CollectedRun, options: OutputOptions) =>
  Effect.gen(function*() {
    const problems = yield* problemsOf(collected, options.evaluateOn!, options.problemsSource ?? "the built-in problems")
    const evaluator = yield* makeEvaluator(options.evaluator)
    return yield* scoreSamples(evaluator, problems.map((problem, i) => ({ problem, texts: collected.problems[i]!.samples.map((s) => s.text) })))
  })

export const writeRunOutputs = (
  collected: CollectedRun, options: OutputOptions
): Effect.Effect<RunOutputs, OutputError | InputFileError | EvaluatorSetupError | EvaluationError> =>
  Effect.gen(function*() {
    const scored = options.evaluateOn !== undefined ? yield* score(collected, options) : undefined
    const records = recordsOf(collected, scored)
    const samplesPath = join(options.outDir, "samples.jsonl")
    yield* Effect.tryPromise({ try: () => writeFile(samplesPath, formatSamplesJsonl(records)), catch: (e) => new OutputError({ path: samplesPath, message: String(e) }) })
    const report = reportOf(collected, scored)
    const written = yield* Effect.tryPromise({
      try: () => writeReport(options.outDir, report),
      catch: (e) => new OutputError({ path: options.outDir, message: String(e) })
    })
    return {
      samplesPath,
      reportPath: written.markdownPath,
      chartPaths: written.chartPaths,
      records,
      report,
      ...(scored !== undefined ? { passAtK: scored.passAtK } : {})
    }
  })
