/**
 * Continuous batching against waves, on a workload whose sample lengths vary.
 * Under the few-shot prompt, each problem's samples are child nodes of their
 * own, each with its own `maxTokens` drawn from a seeded spread (the prompt is
 * shared whole: a child adds no text). Both modes decode the same tree on one
 * engine whose batch is narrower than the samples: waves start the next
 * `maxBatch` samples only once the longest of a wave has ended, so short
 * samples leave their places empty; continuous batching refills a place as
 * soon as its sample ends. Given a second engine that decodes stepwise
 * (EngineOptions.overlap false: each step read back before the next is
 * planned), continuous batching runs on it too, and the report has the
 * overlapped engine's speed over the stepwise one's.
 *
 * Each mode first runs once, untimed, on the same tree with every sample cut
 * to a few tokens (first uses); then `repeats` rounds run both modes,
 * alternating which goes first. Before every run the KV cache is emptied and
 * the prompts prefilled, untimed (each sample node asking for one token,
 * which is sampled but never written to the cache): both modes start from the
 * same cache, holding the prompts and none of an earlier run's samples, as a
 * real workload's samples are new. Sampling is keyed by (seed, sample, step), so
 * both modes must give the same completions: any difference fails the run.
 */
import { type Completion, type EngineOptions, type GenerateResult, type LoadedModel, type PromptTree, type SchedulingMode, TreeEngine } from "@canopy/runtime"
import { Data } from "effect"
import type { Problem } from "../pipeline/problems.ts"
import { renderProblemPrompt } from "../pipeline/prompt.ts"
import { pairedRatios, ratioPhrase, type Spread, spreadOf, valueWithRange } from "./figures.ts"

/** The runs compared: continuous batching and waves on the overlapped engine, continuous batching on the stepwise one. */
export const CONTENDERS = ["continuous", "stepwise", "waves"] as const
export type Contender = typeof CONTENDERS[number]

const schedulingOf = (c: Contender): SchedulingMode => (c === "waves" ? "waves" : "continuous")
const contenderName = (c: Contender): string => (c === "stepwise" ? "continuous scheduling, stepwise" : `${c} scheduling`)

/** Tokens each sample decodes in the warm-up runs. */
const WARM_UP_TOKENS = 4

export interface ScheduleWorkload {
  readonly fewShot: string
  readonly problems: ReadonlyArray<Problem>
  readonly samplesPerProblem: number
  /** the spread each sample's maxTokens is drawn from, both ends included */
  readonly minTokens: number
  readonly maxTokens: number
  /** seeds both the lengths and the sampling */
  readonly seed: number
}

/** `count` lengths drawn uniformly from [min, max] by a seeded xorshift: the same workload for the same seed. */
export const sampleLengths = (count: number, min: number, max: number, seed: number): Array<number> => {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1
  return Array.from({ length: count }, () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return min + ((x >>> 0) % (max - min + 1))
  })
}

/** The few-shot root, a node per problem, and under each one a node per sample with its own maxTokens (`lengths`, problem by problem). */
export const scheduleTree = (workload: ScheduleWorkload, lengths: ReadonlyArray<number>): PromptTree => {
  const n = workload.samplesPerProblem
  return {
    text: workload.fewShot,
    children: workload.problems.map((problem, p) => ({
      text: renderProblemPrompt(problem),
      children: lengths.slice(p * n, (p + 1) * n).map((maxTokens) => ({ text: "", samples: 1, sampling: { maxTokens } }))
    }))
  }
}

/** An engine of `options` that decodes stepwise on the kernels `engine` was tuned to: the stepwise contender beside `engine`. */
export const createStepwiseEngine = (device: GPUDevice, model: LoadedModel, engine: TreeEngine, options: EngineOptions): Promise<TreeEngine> =>
  TreeEngine.create(device, model, {
    ...options, overlap: false, kernels: { levelTile: engine.tuning.levelTile.value, matmul: engine.tuning.matmul.choice }
  })

/** A mode gave other completions than the first run: sampling is keyed by (seed, sample, step), so this is a scheduler bug. */
export class ScheduleMismatch extends Data.TaggedError("ScheduleMismatch")<{
  readonly mode: Contender
  readonly round: number
  readonly problem: string
}> {
  override get message(): string {
    return `${contenderName(this.mode)}, round ${this.round}: ${this.problem}, unlike the first run (continuous); ` +
      "seeded sampling is keyed by (seed, sample, step), so every scheduling, overlapped or stepwise, must give the same completions"
  }
}

/** What differs between two runs' completions (both sorted by path, then sample), or undefined. */
export const completionsDiffer = (reference: ReadonlyArray<Completion>, other: ReadonlyArray<Completion>): string | undefined => {
  if (reference.length !== other.length) return `${other.length} completions instead of ${reference.length}`
  for (let i = 0; i < reference.length; i++) {
    const a = reference[i]!
    const b = other[i]!
    const at = `sample ${a.sample} of the node at [${a.path.join(", ")}]`
    if (a.path.join("/") !== b.path.join("/") || a.sample !== b.sample) return `completion ${i} is of another node or sample than ${at}`
    const step = a.tokens.findIndex((t, k) => b.tokens[k] !== t)
    if (step >= 0 || a.tokens.length !== b.tokens.length) {
      return `${at} differs from step ${step >= 0 ? step : Math.min(a.tokens.length, b.tokens.length)} (${b.tokens.length} tokens against ${a.tokens.length})`
    }
    if (a.finishReason !== b.finishReason) return `${at} finished with ${b.finishReason}, not ${a.finishReason}`
  }
  return undefined
}

export interface ScheduleModeFigures {
  readonly mode: Contender
  /** generated tokens over the request's wall time, median and range over the rounds */
  readonly tokensPerSecond: Spread
  /** each round's tokens/s, in round order */
  readonly rounds: ReadonlyArray<number>
  readonly seconds: Spread
  /** medians over the rounds of the engine's figures for the request */
  readonly idleShare: number
  readonly meanBatch: number
  readonly steps: number
  readonly waves: number
  readonly preemptions: number
  /** prompt tokens the timed runs prefilled: 0, since each found its prompts just prefilled */
  readonly prefillTokens: number
}

export interface ScheduleReport {
  readonly adapter: string
  readonly model: string
  readonly maxBatch: number
  readonly problems: number
  readonly samplesPerProblem: number
  readonly samples: number
  readonly minTokens: number
  readonly maxTokens: number
  /** tokens every run generates: the drawn lengths summed */
  readonly generatedTokens: number
  readonly repeats: number
  readonly modes: { readonly continuous: ScheduleModeFigures; readonly waves: ScheduleModeFigures; readonly stepwise?: ScheduleModeFigures }
  /** continuous tokens/s over waves', round by round: median and range */
  readonly speedup: Spread
  /** continuous tokens/s overlapped over stepwise, round by round (when a stepwise engine ran) */
  readonly overlapSpeedup?: Spread
  /** every run's completions equal the first's (the run fails otherwise) */
  readonly identical: true
}

export interface ScheduleBenchOptions extends ScheduleWorkload {
  /** timed rounds of both modes (default 3) */
  readonly repeats?: number
  readonly onProgress?: (text: string) => void
}

interface TimedRun {
  readonly result: GenerateResult
  readonly seconds: number
}

/** A tree to time, and the same prompts with one token per sample, whose run leaves exactly the prompts cached. */
interface RunTrees {
  readonly tree: PromptTree
  readonly prime: PromptTree
}

/** Empties the cache, prefills the prompts (untimed), then times one run of the tree. */
const decode = async (engine: TreeEngine, trees: RunTrees, seed: number, scheduling: SchedulingMode): Promise<TimedRun> => {
  // ignoreEos: every sample decodes exactly its drawn length, whatever the model
  const sampling = { temperature: 1, seed, ignoreEos: true }
  engine.clearCache()
  await engine.generate({ tree: trees.prime, sampling })
  const started = performance.now()
  const result = await engine.generate({ tree: trees.tree, sampling, scheduling })
  return { result, seconds: (performance.now() - started) / 1000 }
}

const figuresOf = (mode: Contender, runs: ReadonlyArray<TimedRun>): ScheduleModeFigures => {
  const mid = (pick: (r: TimedRun) => number) => spreadOf(runs.map(pick)).median
  const rounds = runs.map((r) => r.result.stats.generatedTokens / r.seconds)
  return {
    mode,
    tokensPerSecond: spreadOf(rounds),
    rounds,
    seconds: spreadOf(runs.map((r) => r.seconds)),
    idleShare: mid((r) => r.result.stats.idleShare),
    meanBatch: mid((r) => r.result.stats.meanBatch),
    steps: mid((r) => r.result.stats.steps),
    waves: mid((r) => r.result.stats.waves),
    preemptions: mid((r) => r.result.stats.preemptions),
    prefillTokens: mid((r) => r.result.stats.prefillTokens)
  }
}

/**
 * Runs the comparison on `engine` (and continuous batching on `stepwise`, an
 * engine of the same options but overlap false, when given); its maxBatch
 * should be below the samples, or there is one wave and nothing to compare.
 */
export const runScheduleBench = async (
  engine: TreeEngine, options: ScheduleBenchOptions, stepwise?: TreeEngine
): Promise<Omit<ScheduleReport, "adapter" | "model">> => {
  const contenders = CONTENDERS.filter((c) => c !== "stepwise" || stepwise !== undefined)
  const engineOf = (c: Contender): TreeEngine => (c === "stepwise" ? stepwise! : engine)
  const repeats = Math.max(1, options.repeats ?? 3)
  const samples = options.problems.length * options.samplesPerProblem
  const lengths = sampleLengths(samples, options.minTokens, options.maxTokens, options.seed)
  const prime = scheduleTree(options, lengths.map(() => 1))
  const timed: RunTrees = { tree: scheduleTree(options, lengths), prime }
  const warm: RunTrees = { tree: scheduleTree(options, lengths.map((m) => Math.min(m, WARM_UP_TOKENS))), prime }
  for (const mode of contenders) {
    options.onProgress?.(`warm-up ${mode}, untimed`)
    await decode(engineOf(mode), warm, options.seed, schedulingOf(mode))
  }
  const runs = new Map<Contender, Array<TimedRun>>(contenders.map((m) => [m, []]))
  let reference: ReadonlyArray<Completion> | undefined
  for (let round = 0; round < repeats; round++) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse()
    for (const mode of order) {
      const run = await decode(engineOf(mode), timed, options.seed, schedulingOf(mode))
      reference ??= run.result.completions
      const problem = completionsDiffer(reference, run.result.completions)
      if (problem !== undefined) throw new ScheduleMismatch({ mode, round: round + 1, problem })
      runs.get(mode)!.push(run)
      options.onProgress?.(
        `round ${round + 1}/${repeats} ${mode}: ${(run.result.stats.generatedTokens / run.seconds).toFixed(1)} tokens/s, ` +
          `idle share ${(100 * run.result.stats.idleShare).toFixed(0)}%`
      )
    }
  }
  const continuous = figuresOf("continuous", runs.get("continuous")!)
  const waves = figuresOf("waves", runs.get("waves")!)
  const stepwiseRuns = runs.get("stepwise")
  const stepwiseFigures = stepwiseRuns === undefined ? undefined : figuresOf("stepwise", stepwiseRuns)
  return {
    maxBatch: engine.maxBatch,
    problems: options.problems.length,
    samplesPerProblem: options.samplesPerProblem,
    samples,
    minTokens: options.minTokens,
    maxTokens: options.maxTokens,
    generatedTokens: lengths.reduce((a, b) => a + b, 0),
    repeats,
    modes: { continuous, waves, ...(stepwiseFigures === undefined ? {} : { stepwise: stepwiseFigures }) },
    speedup: spreadOf(pairedRatios(continuous.rounds, waves.rounds)),
    ...(stepwiseFigures === undefined ? {} : { overlapSpeedup: spreadOf(pairedRatios(continuous.rounds, stepwiseFigures.rounds)) }),
    identical: true
  }
}

const percent = (share: number): string => `${(100 * share).toFixed(0)}%`

/** The table the command prints: a line per mode, then the speed-up. */
export const formatScheduleTable = (report: ScheduleReport): ReadonlyArray<string> => {
  const header = ["scheduling", "tokens/s", "seconds", "idle share", "mean batch", "steps", "waves", "preemptions"]
  const rows = CONTENDERS.flatMap((mode) => {
    const m = report.modes[mode]
    return m === undefined ? [] : [[
      mode === "stepwise" ? "continuous, stepwise" : mode, valueWithRange(m.tokensPerSecond, 1), valueWithRange(m.seconds, 2), percent(m.idleShare), m.meanBatch.toFixed(1),
      String(m.steps), String(m.waves), String(m.preemptions)
    ]]
  })
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  return [
    `${report.samples} samples (${report.problems} problems × ${report.samplesPerProblem}) of ${report.minTokens}–${report.maxTokens} tokens ` +
      `(${report.generatedTokens} in all) under one few-shot prompt, at most ${report.maxBatch} decoding at once`,
    `each mode warmed up untimed, then ${report.repeats} round${report.repeats === 1 ? "" : "s"} of each, the order reversed every round, ` +
      "each on an emptied KV cache with only the prompts prefilled, untimed; " +
      "medians, with the range over the rounds in brackets; idle share: the batch's places left empty while the request decoded; " +
      "stepwise: an engine that reads each step back before it plans the next (overlap off)",
    line(header),
    ...rows.map(line),
    `continuous over waves: ${ratioPhrase(report.speedup)}`,
    ...(report.overlapSpeedup === undefined ? [] : [`overlapped over stepwise: ${ratioPhrase(report.overlapSpeedup)}`]),
    "every run gave the same completions"
  ]
}
