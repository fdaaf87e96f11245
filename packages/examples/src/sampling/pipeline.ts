/**
 * The sampling pipeline: problems → prompt tree → samples on disk, optionally
 * evaluated (pass@k) and compared across decoding modes, with a report.
 *
 * With `compare`, every mode gets a fresh engine over the same GPU and model:
 * the KV cache outlives requests, so a mode run after another would find the
 * prompts cached and skip its prefill. Fresh engines make each mode prefill
 * what it would on its own, and the report shows prefill and decode apart.
 */
import {
  adapterName, type Completion, describeModelSource, Engine, type EngineError, type EngineOptions, Gpu, Model, type SamplingOptions
} from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import {
  type EvaluationError, type Evaluator, type EvaluatorOptions, type EvaluatorSetupError, makeEvaluator, type SampleEvaluation
} from "../pipeline/evaluate.ts"
import { type PassAtKSummary, summarizePassAtK } from "../pipeline/passAtK.ts"
import type { Problem } from "../pipeline/problems.ts"
import { createProgress, type ProgressMode } from "../pipeline/progress.ts"
import { extractProgram, STOP_SEQUENCES } from "../pipeline/prompt.ts"
import { type ModeResult, type RunReport, writeReport } from "../pipeline/report.ts"
import { formatSamplesJsonl, openSamplesWriter, type SampleRecord, sampleRecord } from "../pipeline/samples.ts"
import { type PromptRun, run, type RunStats } from "../prompt/run.ts"
import { COMPARED_MODES, type DecodeMode, TREE_MODE } from "./modes.ts"
import { problemTree, type ProblemTree } from "./tree.ts"

export interface PipelineOptions {
  readonly problems: ReadonlyArray<Problem>
  readonly fewShot: string
  readonly samplesPerProblem: number
  /** Stops are always STOP_SEQUENCES: the prompt ends inside an open code fence. */
  readonly sampling: Partial<Omit<SamplingOptions, "stop">>
  readonly outDir: string
  readonly evaluate: boolean
  readonly compare: boolean
  readonly progress: ProgressMode
  readonly engine?: EngineOptions
  readonly evaluator?: EvaluatorOptions
  readonly title?: string
}

export interface ModeRun {
  readonly mode: DecodeMode
  readonly stats: RunStats
  /** Wall time of the mode including engine setup (KV pool, kernel pipelines), which its stats leave out. */
  readonly wallSeconds: number
  /** Samples whose text equals the first mode's, for the same problem and sample index. */
  readonly agreeing: number
}

export interface PipelineResult {
  readonly outDir: string
  readonly samplesPath: string
  readonly reportPath: string
  readonly chartPaths: ReadonlyArray<string>
  readonly adapter: string
  readonly model: string
  readonly modes: ReadonlyArray<ModeRun>
  /** Every sample of the first mode, in problem then sample order. */
  readonly records: ReadonlyArray<SampleRecord>
  readonly passAtK?: PassAtKSummary
  readonly report: RunReport
}

export class OutputError extends Schema.TaggedError<OutputError>()("OutputError", {
  path: Schema.String,
  message: Schema.String
}) {}

export type PipelineError = EngineError | EvaluatorSetupError | EvaluationError | OutputError

const write = (path: string, text: string) =>
  Effect.tryPromise({ try: () => writeFile(path, text), catch: (e) => new OutputError({ path, message: String(e) }) })

/** One mode on a fresh engine; samples stream to `onSample` as they finish. */
const runMode = (
  options: PipelineOptions,
  work: ProblemTree,
  mode: DecodeMode,
  label: string,
  onSample: (problem: Problem, completion: Completion) => void
) =>
  Effect.gen(function*() {
    const progress = createProgress({ mode: options.progress })
    const problemOf = new Map(work.nodes.map(({ problem, node }) => [node, problem]))
    const finished = new Map<Problem, number>()
    let tokens = 0
    progress.start({ problems: work.nodes.length, samples: work.nodes.length * options.samplesPerProblem })
    progress.log(label)
    const result = yield* run(work.root, {
      sampling: { ...options.sampling, stop: STOP_SEQUENCES },
      attention: mode.attention,
      sharing: mode.sharing,
      events: {
        onStep: (step) => {
          progress.tokens(step.generatedTokens - tokens)
          tokens = step.generatedTokens
        },
        onCompletion: (node, completion) => {
          const problem = problemOf.get(node)!
          onSample(problem, completion)
          progress.sampleDone()
          const done = (finished.get(problem) ?? 0) + 1
          finished.set(problem, done)
          if (done === node.samples) progress.problemDone()
        }
      }
    }).pipe(Effect.ensuring(Effect.sync(() => progress.stop())))
    return result
  }).pipe(Effect.provide(Engine.layer(options.engine ?? {}), { local: true }))

const recordsOf = (work: ProblemTree, result: PromptRun, evaluations?: ReadonlyArray<SampleEvaluation>): Array<SampleRecord> => {
  const records: Array<SampleRecord> = []
  for (const { problem, node } of work.nodes) {
    for (const c of result.completions(node)) {
      const evaluation = evaluations?.[records.length]
      records.push(sampleRecord({
        problemId: problem.id,
        sample: c.sample,
        text: c.text,
        tokens: c.tokens.length,
        finishReason: c.finishReason,
        ...(evaluation !== undefined ? { evaluation } : {})
      }))
    }
  }
  return records
}

const agreeing = (work: ProblemTree, first: PromptRun, other: PromptRun): number =>
  work.nodes.reduce((n, { node }) => {
    const mine = first.completions(node)
    return n + other.completions(node).filter((c) => mine[c.sample]?.text === c.text).length
  }, 0)

const modeResult = ({ mode, stats }: ModeRun): ModeResult => ({
  name: mode.name,
  seconds: stats.totalSeconds,
  tokens: stats.generatedTokens,
  tokensPerSecond: stats.tokensPerSecond,
  prefillSeconds: stats.prefillSeconds,
  decodeSeconds: stats.decodeSeconds,
  prefillTokens: stats.prefillTokens,
  decodeTokensPerSecond: stats.decodeTokensPerSecond
})

const reportNotes = (options: PipelineOptions, modes: ReadonlyArray<ModeRun>, samples: number): Array<string> => {
  const s = options.sampling
  const notes = [
    `Sampling: temperature ${s.temperature ?? "default"}, top-k ${s.topK ?? "off"}, top-p ${s.topP ?? "off"}, ` +
    `seed ${s.seed ?? 0}, at most ${s.maxTokens ?? "default"} tokens per sample.`
  ]
  if (modes.length > 1) {
    notes.push(
      "Each mode ran on a fresh engine (same GPU, same model weights), so each prefilled its own prompts from an empty KV cache; " +
        "times cover prefill and decode, reported apart. Engine setup is not timed.",
      `The baseline attends each sample's whole path with per-sequence paged decoding over the same prefix-tree cache; ` +
        `single-level shares KV only among one problem's samples, so the few-shot prefix is held and prefilled once per problem.`,
      ...modes.slice(1).map((m) => `${m.mode.name}: ${m.agreeing} of ${samples} samples identical to ${modes[0]!.mode.name}'s.`)
    )
  }
  return notes
}

export interface ScoredSamples {
  /** One per sample, problem by problem, in the order given. */
  readonly evaluations: ReadonlyArray<SampleEvaluation>
  readonly passAtK: PassAtKSummary
  readonly isolation: string
}

/**
 * Runs the program extracted from each sample text on its problem's tests and
 * summarizes pass@k: what `evaluate` does with the pipeline's samples.
 */
export const scoreSamples = (
  evaluator: Evaluator,
  problems: ReadonlyArray<{ readonly problem: Problem; readonly texts: ReadonlyArray<string> }>
): Effect.Effect<ScoredSamples, EvaluationError> =>
  Effect.gen(function*() {
    const items = problems.flatMap(({ problem, texts }) => texts.map((text) => ({ problem, program: extractProgram(text) })))
    const evaluations = yield* evaluator.evaluateAll(items)
    let at = 0
    const passAtK = summarizePassAtK(problems.map(({ problem, texts }) => {
      const mine = evaluations.slice(at, at + texts.length)
      at += texts.length
      return { problemId: problem.id, n: mine.length, c: mine.filter((e) => e.passed).length }
    }))
    return { evaluations, passAtK, isolation: evaluator.isolation.network }
  })

/** Runs the pipeline on the GPU and model in context; writes samples.jsonl, report.md and the chart to outDir. */
export const runPipeline = (options: PipelineOptions): Effect.Effect<PipelineResult, PipelineError, Gpu | Model> =>
  Effect.gen(function*() {
    const startedAt = new Date().toISOString()
    const adapter = adapterName(yield* Gpu)
    const model = describeModelSource((yield* Model).source)
    const work = problemTree(options.fewShot, options.problems, options.samplesPerProblem)
    const samplesPath = join(options.outDir, "samples.jsonl")
    const modes = options.compare ? COMPARED_MODES : [TREE_MODE]

    // The first mode's samples stream to disk as they finish, so a run that dies part way keeps them.
    const writer = yield* Effect.tryPromise({
      try: () => openSamplesWriter(samplesPath),
      catch: (e) => new OutputError({ path: samplesPath, message: String(e) })
    })
    const runs: Array<{ mode: DecodeMode; result: PromptRun; wallSeconds: number }> = []
    for (const [i, mode] of modes.entries()) {
      const label = modes.length > 1 ? `mode ${i + 1}/${modes.length}: ${mode.name}` : mode.name
      const onSample = i === 0
        ? (problem: Problem, c: Completion) =>
          void writer.write(
            sampleRecord({ problemId: problem.id, sample: c.sample, text: c.text, tokens: c.tokens.length, finishReason: c.finishReason })
          ).catch(() => {}) // a failing disk surfaces when the file is rewritten below
        : () => {}
      const started = performance.now()
      const result = yield* runMode(options, work, mode, label, onSample).pipe(
        Effect.ensuring(i === 0 ? Effect.promise(() => writer.close().catch(() => {})) : Effect.void)
      )
      runs.push({ mode, result, wallSeconds: (performance.now() - started) / 1000 })
    }
    const first = runs[0]!.result
    const totalSamples = options.problems.length * options.samplesPerProblem

    const scored = options.evaluate
      ? yield* Effect.flatMap(makeEvaluator(options.evaluator), (evaluator) =>
        scoreSamples(evaluator, work.nodes.map(({ problem, node }) => ({ problem, texts: first.completions(node).map((c) => c.text) }))))
      : undefined
    // Rewritten in problem and sample order, with verdicts when evaluated.
    const records = recordsOf(work, first, scored?.evaluations)
    yield* write(samplesPath, formatSamplesJsonl(records))
    const passAtK = scored?.passAtK
    const isolation = scored?.isolation
    const modeRuns: Array<ModeRun> = runs.map(({ mode, result, wallSeconds }) => ({
      mode,
      stats: result.stats,
      wallSeconds,
      agreeing: agreeing(work, first, result)
    }))
    const report: RunReport = {
      ...(options.title !== undefined ? { title: options.title } : {}),
      model,
      adapter,
      problems: options.problems.length,
      samplesPerProblem: options.samplesPerProblem,
      modes: modeRuns.map(modeResult),
      ...(passAtK !== undefined ? { passAtK } : {}),
      ...(isolation !== undefined ? { isolation } : {}),
      samplesPath: "samples.jsonl",
      startedAt,
      notes: reportNotes(options, modeRuns, totalSamples)
    }
    const written = yield* Effect.tryPromise({
      try: () => writeReport(options.outDir, report),
      catch: (e) => new OutputError({ path: options.outDir, message: String(e) })
    })
    return {
      outDir: options.outDir,
      samplesPath,
      reportPath: written.markdownPath,
      chartPaths: written.chartPaths,
      adapter,
      model,
      modes: modeRuns,
      records,
      ...(passAtK !== undefined ? { passAtK } : {}),
      report
    }
  })
