/**
 * One job on a worker: the samples of its block not yet written are drawn
 * through the engine, each written the moment it completes.
 *
 * The request is the tree a local run builds, cut to this block: the run's
 * prefix, then the problem's prompt with `firstSample` at the block's start
 * and the problem's own seed, so sample i of the problem is the sample a
 * local run draws as sample i. A redone job first looks which of its samples
 * an earlier attempt wrote and asks only for the others (one child per run of
 * missing indices: the children share the prompt, so it is prefilled once).
 */
import type { GenerateEvents, GenerateRequest, GenerateResult, PromptTree } from "@canopy/runtime"
import type { Redis } from "ioredis"
import { Data } from "effect"
import { RunNotFound } from "./errors.ts"
import type { JobData, RunRecord, StoredProblem } from "./spec.ts"
import { type JobRecord, missingSamples, readPrefix, readProblem, readRun, writeSample } from "./store.ts"

/** What a worker runs its jobs through: the engine's generate, stopped between steps by the signal. */
export interface SampleEngine {
  readonly generate: (request: GenerateRequest, events: GenerateEvents, signal: AbortSignal) => Promise<GenerateResult>
}

/** The engine numbered a completion outside the block it was asked for (an engine that ignores `firstSample`). */
export class UnexpectedSample extends Data.TaggedError("UnexpectedSample")<{ readonly job: string; readonly sample: number; readonly range: string }> {
  override get message(): string {
    return `job ${this.job}: the engine returned sample ${this.sample}, outside the asked-for ${this.range}`
  }
}

export interface JobContext {
  readonly redis: Redis
  readonly queueUrl: string
  readonly worker: string
  readonly engine: SampleEngine
  /** what the engine runs on, for the job's record */
  readonly describe: string
  /** generated tokens as decode steps make them, for the worker's rate */
  readonly onTokens: (tokens: number) => void
}

interface RunView {
  readonly record: RunRecord
  readonly prefix: string
}

/** Run records and prefixes never change once enqueued: each is read once per worker. */
const runViews = new WeakMap<Redis, Map<string, Promise<RunView>>>()

const runView = (ctx: JobContext, run: string): Promise<RunView> => {
  const cache = runViews.get(ctx.redis) ?? new Map<string, Promise<RunView>>()
  runViews.set(ctx.redis, cache)
  let view = cache.get(run)
  if (view === undefined) {
    view = (async () => {
      const record = await readRun(ctx.redis, run)
      if (record === undefined) throw new RunNotFound({ run, url: ctx.queueUrl })
      return { record, prefix: await readPrefix(ctx.redis, record.group) }
    })()
    view.catch(() => cache.delete(run)) // a failed read is tried again by the next job
    cache.set(run, view)
  }
  return view
}

/** Sorted indices as [first, count] runs of consecutive ones. */
export const consecutiveRuns = (indices: ReadonlyArray<number>): Array<readonly [first: number, count: number]> => {
  const runs: Array<[number, number]> = []
  for (const i of indices) {
    const last = runs[runs.length - 1]
    if (last !== undefined && last[0] + last[1] === i) last[1]++
    else runs.push([i, 1])
  }
  return runs
}

/** The request for the missing samples of one problem: the local run's tree, cut to them. */
export const blockRequest = (
  prefix: string, problem: StoredProblem, ranges: ReadonlyArray<readonly [number, number]>, record: RunRecord
): GenerateRequest => {
  const tree: PromptTree = {
    text: prefix,
    children: ranges.map(([first, count]) => ({ text: problem.prompt, samples: count, firstSample: first, sampling: { seed: problem.seed } }))
  }
  return { tree, sampling: record.sampling }
}

/** Runs one attempt at a job; returns what it did. */
export const runJob = async (ctx: JobContext, id: string, data: JobData, attempt: number, signal: AbortSignal): Promise<JobRecord> => {
  const startedAt = Date.now()
  const { record, prefix } = await runView(ctx, data.run)
  const problem = await readProblem(ctx.redis, data.run, data.problem)
  if (problem === undefined) throw new RunNotFound({ run: data.run, url: ctx.queueUrl })
  const missing = await missingSamples(ctx.redis, data.run, data.problem, data.first, data.count)
  const base = {
    job: id, worker: ctx.worker, engine: ctx.describe, problem: data.problem, first: data.first, count: data.count, attempt,
    found: data.count - missing.length
  }
  if (missing.length === 0) {
    const none = { promptTokens: 0, prefillTokens: 0, reusedTokens: 0, generatedTokens: 0, prefillSeconds: 0, decodeSeconds: 0 }
    return { ...base, written: 0, ...none, startedAt, finishedAt: Date.now() }
  }
  const ranges = consecutiveRuns(missing)
  const writes: Array<Promise<boolean>> = []
  let unexpected: UnexpectedSample | undefined
  let stepTokens = 0
  const events: GenerateEvents = {
    onStep: (step) => {
      ctx.onTokens(Math.max(0, step.generatedTokens - stepTokens))
      stepTokens = step.generatedTokens
    },
    onCompletion: (c) => {
      const [first, count] = ranges[c.path[0] ?? -1] ?? [0, 0]
      // not thrown here: the engine would report a handler's exception as its own failure
      if (c.path.length !== 1 || c.sample < first || c.sample >= first + count) {
        unexpected ??= new UnexpectedSample({ job: id, sample: c.sample, range: `[${first}, ${first + count}) at ${JSON.stringify(c.path)}` })
        return
      }
      writes.push(writeSample(ctx.redis, record, data.problem, c.sample, {
        text: c.text, tokens: c.tokens.length, finishReason: c.finishReason, worker: ctx.worker
      }))
    }
  }
  let result: GenerateResult
  try {
    result = await ctx.engine.generate(blockRequest(prefix, problem, ranges, record), events, signal)
  } finally {
    // the samples that completed are kept whatever ends the attempt
    await Promise.allSettled(writes)
  }
  if (unexpected !== undefined) throw unexpected
  const written = (await Promise.all(writes)).filter((w) => w).length
  const s = result.stats
  return {
    ...base,
    written,
    promptTokens: s.promptTokens,
    prefillTokens: s.prefillTokens,
    reusedTokens: s.reusedTokens,
    generatedTokens: s.generatedTokens,
    prefillSeconds: s.prefillSeconds,
    decodeSeconds: s.decodeSeconds,
    startedAt,
    finishedAt: Date.now()
  }
}
