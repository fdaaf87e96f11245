/**
 * The sampling pipeline: problems → prompt tree → samples on disk, optionally
 * evaluated (pass@k) and compared across decoding modes, with a report.
 *
 * With `compare`, every run of a mode gets a fresh engine over the same GPU
 * and model: the KV cache outlives requests, so a mode run after another
 * would find the prompts cached and skip its prefill. Fresh engines make each
 * mode prefill what it would on its own, and the report shows prefill and
 * decode apart.
 *
 * A comparison is timed so that it reproduces: each mode first runs once,
 * untimed, on a small piece of the work (the first run of a process pays for
 * compiling pipelines and first touches of memory, which once fell wholly on
 * the mode measured first); then `repeats` rounds run every mode once, the
 * order rotating from round to round so that no mode always goes first; the
 * figures are medians over the rounds, ratios the median of the per-round
 * ratios, each with its range.
 */
import {
  adapterName, type Completion, describeModelSource, Engine, type EngineError, type EngineOptions, Gpu, Model, type SamplingOptions,
  type SchedulingMode
} from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import {
  type EvaluationError, type Evaluator, type EvaluatorOptions, type EvaluatorSetupError, makeEvaluator, type SampleEvaluation
} from "../pipeline/evaluate.ts"
import { describeIsolation } from "../pipeline/isolation.ts"
import { type PassAtKSummary, summarizePassAtK } from "../pipeline/passAtK.ts"
import type { Problem } from "../pipeline/problems.ts"
import { createProgress, type ProgressMode } from "../pipeline/progress.ts"
import { extractProgram, STOP_SEQUENCES } from "../pipeline/prompt.ts"
import { type ModeResult, type RunReport, writeReport } from "../pipeline/report.ts"
import { formatSamplesJsonl, openSamplesWriter, type SampleRecord, sampleRecord } from "../pipeline/samples.ts"
import { type PromptRun, run, type RunStats } from "@canopy/runtime/prompt"
import { GEMV_MAX_ROWS } from "@canopy/kernels"
import { median, type Spread, spreadOf } from "../bench/figures.ts"
import { COMPARED_MODES, type DecodeMode, TREE_MODE } from "./modes.ts"
import { createRoundProgress, type RoundProgress } from "./roundProgress.ts"
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
  /** Timed rounds of the compared modes (default 3); a run without `compare` runs once. */
  readonly repeats?: number
  readonly progress: ProgressMode
  /** how the samples share the decode batch (default continuous; waves, to compare against) */
  readonly scheduling?: SchedulingMode
  readonly engine?: EngineOptions
  readonly evaluator?: EvaluatorOptions
  readonly title?: string
}

export interface ModeRun {
  readonly mode: DecodeMode
  /** Token counts (the same in every round) with each time the median over the rounds. */
  readonly stats: RunStats
  /** Each timed round's figures, in round order. */
  readonly rounds: ReadonlyArray<RunStats>
  readonly seconds: Spread
  readonly prefillSeconds: Spread
  readonly decodeSeconds: Spread
  /** Wall time of each round's run including engine setup (KV pool, kernel pipelines), which its stats leave out. */
  readonly wallSeconds: ReadonlyArray<number>
  /** Samples whose text equals the first mode's first round, for the same problem and sample index, in every round. */
  readonly agreeing: number
}

/** What a single-mode run's chart shows of its course: generated tokens so far at seconds since the start. */
export type Timeline = ReadonlyArray<readonly [seconds: number, tokens: number]>

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
  /** Timed rounds of each mode (1 without `compare`). */
  readonly repeats: number
}

export class OutputError extends Schema.TaggedError<OutputError>()("OutputError", {
  path: Schema.String,
  message: Schema.String
}) {}

export type PipelineError = EngineError | EvaluatorSetupError | EvaluationError | OutputError

const write = (path: string, text: string) =>
  Effect.tryPromise({ try: () => writeFile(path, text), catch: (e) => new OutputError({ path, message: String(e) }) })

interface RunHooks {
  readonly onSample: (problem: Problem, completion: Completion) => void
  readonly onTokens?: (generated: number) => void
}

/** One run of a mode on a fresh engine; samples stream to `onSample` as they finish. */
const runMode = (
  options: PipelineOptions,
  work: ProblemTree,
  mode: DecodeMode,
  sampling: PipelineOptions["sampling"],
  hooks: RunHooks
) => {
  const problemOf = new Map(work.nodes.map(({ problem, node }) => [node, problem]))
  return run(work.root, {
    sampling: { ...sampling, stop: STOP_SEQUENCES },
    attention: mode.attention,
    sharing: mode.sharing,
    ...(options.scheduling !== undefined ? { scheduling: options.scheduling } : {}),
    events: {
      onStep: (step) => hooks.onTokens?.(step.generatedTokens),
      onCompletion: (node, completion) => hooks.onSample(problemOf.get(node)!, completion)
    }
  }).pipe(Effect.provide(Engine.layer(options.engine ?? {}), { local: true }))
}

/** A run without `compare`: the per-problem progress bars, and the course of its token count for the chart. */
const runSingle = (options: PipelineOptions, work: ProblemTree, mode: DecodeMode, onSample: (problem: Problem, completion: Completion) => void) =>
  Effect.gen(function*() {
    const progress = createProgress({ mode: options.progress })
    const finished = new Map<Problem, number>()
    const samplesOf = new Map(work.nodes.map(({ problem, node }) => [problem, node.samples]))
    const timeline: Array<readonly [number, number]> = [[0, 0]]
    const started = performance.now()
    let tokens = 0
    let lastCount = 0
    progress.start({ problems: work.nodes.length, samples: work.nodes.length * options.samplesPerProblem })
    progress.log(mode.name)
    const result = yield* runMode(options, work, mode, options.sampling, {
      onTokens: (generated) => {
        // each engine request counts its tokens from zero
        const added = generated >= lastCount ? generated - lastCount : generated
        lastCount = generated
        tokens += added
        progress.tokens(added)
        timeline.push([(performance.now() - started) / 1000, tokens])
      },
      onSample: (problem, completion) => {
        onSample(problem, completion)
        progress.sampleDone()
        const done = (finished.get(problem) ?? 0) + 1
        finished.set(problem, done)
        if (done === samplesOf.get(problem)) progress.problemDone()
      }
    }).pipe(Effect.ensuring(Effect.sync(() => progress.stop())))
    timeline.push([(performance.now() - started) / 1000, tokens])
    return { result, timeline }
  })

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

/** Samples whose text is the reference's in every one of `runs`. */
const agreeing = (work: ProblemTree, reference: PromptRun, runs: ReadonlyArray<PromptRun>): number =>
  work.nodes.reduce((n, { node }) => {
    const mine = reference.completions(node)
    return n + mine.filter((c) => runs.every((r) => r.completions(node)[c.sample]?.text === c.text)).length
  }, 0)

/** Token counts from the first round (every round generates the same tokens), times the medians over the rounds. */
const medianStats = (rounds: ReadonlyArray<RunStats>): RunStats => {
  const mid = (pick: (s: RunStats) => number) => median(rounds.map(pick))
  return {
    ...rounds[0]!,
    prefillSeconds: mid((s) => s.prefillSeconds),
    decodeSeconds: mid((s) => s.decodeSeconds),
    totalSeconds: mid((s) => s.totalSeconds),
    tokensPerSecond: mid((s) => s.tokensPerSecond),
    decodeTokensPerSecond: mid((s) => s.decodeTokensPerSecond)
  }
}

const modeRun = (mode: DecodeMode, runs: ReadonlyArray<{ readonly result: PromptRun; readonly wallSeconds: number }>, agree: number): ModeRun => {
  const rounds = runs.map((r) => r.result.stats)
  return {
    mode,
    stats: medianStats(rounds),
    rounds,
    seconds: spreadOf(rounds.map((s) => s.totalSeconds)),
    prefillSeconds: spreadOf(rounds.map((s) => s.prefillSeconds)),
    decodeSeconds: spreadOf(rounds.map((s) => s.decodeSeconds)),
    wallSeconds: runs.map((r) => r.wallSeconds),
    agreeing: agree
  }
}

const modeResult = ({ mode, stats, rounds }: ModeRun): ModeResult => ({
  name: mode.name,
  seconds: stats.totalSeconds,
  tokens: stats.generatedTokens,
  tokensPerSecond: stats.tokensPerSecond,
  prefillSeconds: stats.prefillSeconds,
  decodeSeconds: stats.decodeSeconds,
  prefillTokens: stats.prefillTokens,
  promptTokens: stats.promptTokens,
  decodeTokensPerSecond: stats.decodeTokensPerSecond,
  ...(rounds.length > 1
    ? { rounds: rounds.map((r) => ({ seconds: r.totalSeconds, prefillSeconds: r.prefillSeconds, decodeSeconds: r.decodeSeconds })) }
    : {})
})

const reportNotes = (options: PipelineOptions, modes: ReadonlyArray<ModeRun>, samples: number, repeats: number): Array<string> => {
  const s = options.sampling
  const notes = [
    `Sampling: temperature ${s.temperature ?? "default"}, top-k ${s.topK ?? "off"}, top-p ${s.topP ?? "off"}, ` +
    `seed ${s.seed ?? 0} (each problem's own seed derived from it and the problem's id), at most ${s.maxTokens ?? "default"} tokens per sample.`,
    ...(options.scheduling === "waves"
      ? ["Scheduling: waves (each wave of samples waited for its longest sample before the next began), not continuous batching."]
      : [])
  ]
  if (modes.length > 1) {
    const rounds = repeats === 1 ? "one timed round" : `${repeats} timed rounds`
    notes.push(
      `Each mode first ran once, untimed, on one problem (compiling pipelines and warming caches); then ${rounds} ran every mode once, ` +
        `the order rotating each round so that no mode always went first. Times are medians over the rounds, speed-ups the medians of ` +
        `the per-round ratios; brackets give the range over the rounds.`,
      "Every run had a fresh engine (same GPU, same model weights), so each prefilled its own prompts from an empty KV cache; " +
        "times cover prefill and decode, reported apart. Engine setup is not timed.",
      `The baseline attends each sample's whole path with per-sequence paged decoding over the same prefix-tree cache; ` +
        `single-level shares KV only among one problem's samples, so the few-shot prefix is held and prefilled once per problem.`,
      "On a software adapter the times depend on the CPU, its cores and what else runs on them: compare ratios from one run, not times across machines.",
      ...modes.map((m) =>
        m === modes[0]
          ? `${m.mode.name}: ${m.agreeing} of ${samples} samples identical in all of its rounds.`
          : `${m.mode.name}: ${m.agreeing} of ${samples} samples identical to ${modes[0]!.mode.name}'s, in every round.`
      )
    )
  } else {
    notes.push("A single run with no warm-up: its times include compiling the GPU pipelines on first use.")
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
    return { evaluations, passAtK, isolation: describeIsolation(evaluator.isolation) }
  })

/**
 * The piece of the work a warm-up runs: the first problem, enough samples to
 * take the many-row matmul path as the whole run's batches do (the one-row
 * path is taken as samples finish), and a few tokens.
 */
const warmUpWork = (options: PipelineOptions) => {
  const total = options.problems.length * options.samplesPerProblem
  const samples = Math.min(total, Math.max(options.samplesPerProblem, GEMV_MAX_ROWS + 1))
  return {
    work: problemTree(options.fewShot, options.problems.slice(0, 1), samples, options.sampling.seed),
    sampling: { ...options.sampling, maxTokens: Math.min(options.sampling.maxTokens ?? 4, 4) }
  }
}

/** Round r runs the modes rotated by r: over as many rounds as modes, each mode takes each place once. */
export const roundOrder = <A>(modes: ReadonlyArray<A>, round: number): ReadonlyArray<A> =>
  modes.map((_, i) => modes[(i + round) % modes.length]!)

interface TimedRun {
  readonly result: PromptRun
  readonly wallSeconds: number
}

/** Warm-ups, then `repeats` rounds of every mode; the first mode's first round streams its samples to `onSample`. */
const compareModes = (
  options: PipelineOptions,
  work: ProblemTree,
  modes: ReadonlyArray<DecodeMode>,
  repeats: number,
  onSample: (problem: Problem, completion: Completion) => void
) => {
  const progress: RoundProgress = createRoundProgress(
    { rounds: repeats, modes: modes.length, samples: options.problems.length * options.samplesPerProblem },
    { mode: options.progress }
  )
  return Effect.gen(function*() {
    const warm = warmUpWork(options)
    for (const [i, mode] of modes.entries()) {
      progress.warmUp(i, mode.name)
      yield* runMode(options, warm.work, mode, warm.sampling, { onSample: () => {} })
    }
    const runs: Array<Array<TimedRun>> = modes.map(() => [])
    for (let round = 0; round < repeats; round++) {
      for (const mode of roundOrder(modes, round)) {
        const index = modes.indexOf(mode)
        progress.runStart(round, index, mode.name)
        const streams = round === 0 && index === 0
        const started = performance.now()
        const result = yield* runMode(options, work, mode, options.sampling, {
          onSample: (problem, completion) => {
            if (streams) onSample(problem, completion)
            progress.sampleDone()
          }
        })
        const wallSeconds = (performance.now() - started) / 1000
        runs[index]!.push({ result, wallSeconds })
        progress.runEnd(round, index, wallSeconds)
      }
    }
    return runs
  }).pipe(Effect.ensuring(Effect.sync(() => progress.stop())))
}

/** Runs the pipeline on the GPU and model in context; writes samples.jsonl, report.md and the charts to outDir. */
export const runPipeline = (options: PipelineOptions): Effect.Effect<PipelineResult, PipelineError, Gpu | Model> =>
  Effect.gen(function*() {
    const startedAt = new Date().toISOString()
    const gpu = yield* Gpu
    const adapter = adapterName(gpu)
    const model = describeModelSource((yield* Model).source)
    const work = problemTree(options.fewShot, options.problems, options.samplesPerProblem, options.sampling.seed)
    const samplesPath = join(options.outDir, "samples.jsonl")
    const modes = options.compare ? COMPARED_MODES : [TREE_MODE]
    const repeats = options.compare ? Math.max(1, options.repeats ?? 3) : 1

    // The first mode's samples stream to disk as they finish, so a run that dies part way keeps them.
    const writer = yield* Effect.tryPromise({
      try: () => openSamplesWriter(samplesPath),
      catch: (e) => new OutputError({ path: samplesPath, message: String(e) })
    })
    const streamSample = (problem: Problem, c: Completion) =>
      void writer.write(
        sampleRecord({ problemId: problem.id, sample: c.sample, text: c.text, tokens: c.tokens.length, finishReason: c.finishReason })
      ).catch(() => {}) // a failing disk surfaces when the file is rewritten below
    const closeWriter = Effect.promise(() => writer.close().catch(() => {}))
    let timeline: Timeline | undefined
    const runs: ReadonlyArray<ReadonlyArray<TimedRun>> = yield* (options.compare
      ? compareModes(options, work, modes, repeats, streamSample)
      : Effect.gen(function*() {
        const started = performance.now()
        const single = yield* runSingle(options, work, TREE_MODE, streamSample)
        timeline = single.timeline
        return [[{ result: single.result, wallSeconds: (performance.now() - started) / 1000 }]]
      })).pipe(Effect.ensuring(closeWriter))
    const first = runs[0]![0]!.result
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
    const modeRuns: Array<ModeRun> = modes.map((mode, i) => {
      const mine = runs[i]!
      return modeRun(mode, mine, agreeing(work, first, mine.map((r) => r.result)))
    })
    const report: RunReport = {
      ...(options.title !== undefined ? { title: options.title } : {}),
      model,
      adapter,
      software: gpu.adapter.software,
      problems: options.problems.length,
      samplesPerProblem: options.samplesPerProblem,
      workload: workloadText(options),
      modes: modeRuns.map(modeResult),
      ...(options.compare ? { rounds: repeats } : {}),
      ...(timeline !== undefined ? { timeline } : {}),
      ...(passAtK !== undefined ? { passAtK } : {}),
      ...(isolation !== undefined ? { isolation } : {}),
      samplesPath: "samples.jsonl",
      startedAt,
      notes: reportNotes(options, modeRuns, totalSamples, repeats)
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
      report,
      repeats
    }
  })

/** "4 problems × 12 samples, at most 20 tokens each, under a 622-character few-shot prompt" */
export const workloadText = (
  options: Pick<PipelineOptions, "samplesPerProblem" | "sampling" | "fewShot"> & { readonly problems: ArrayLike<unknown> }
): string =>
  `${options.problems.length} problem${options.problems.length === 1 ? "" : "s"} × ${options.samplesPerProblem} samples` +
  `${options.sampling.maxTokens !== undefined ? `, at most ${options.sampling.maxTokens} tokens each` : ""}, ` +
  `under a ${options.fewShot.length}-character few-shot prompt`
