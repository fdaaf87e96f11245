/**
 * `canopy sample --queue`: the sampling pipeline's run enqueued on a queue
 * for workers to draw, followed until done and collected into the same files
 * a local run writes. The run's record keeps what collecting needs later:
 * where the problems came from (to evaluate them) and whether to.
 */
import { enqueueRun, modelKey, QueueClient, type RunRecord, type RunSpec } from "@canopy/queue"
import { resolve } from "node:path"
import { Console, Effect, Option } from "effect"
import type { Problem } from "../pipeline/problems.ts"
import type { ProgressMode } from "../pipeline/progress.ts"
import { renderProblemPrompt, STOP_SEQUENCES } from "../pipeline/prompt.ts"
import type { PipelineOptions } from "../sampling/pipeline.ts"
import { collectAndWrite } from "./collectRun.ts"
import { followRun } from "./follow.ts"

/** What a submitted run keeps for its collection, in the run's `extra`. */
export interface Submission {
  /** the problem file, absolute; absent: the built-in problems */
  readonly problemsFile?: string
  readonly evaluate: boolean
}

export const submissionOf = (run: RunRecord): Submission => {
  const extra = (run.extra ?? {}) as Partial<Submission>
  return { ...(typeof extra.problemsFile === "string" ? { problemsFile: extra.problemsFile } : {}), evaluate: extra.evaluate === true }
}

export interface QueuedSampleOptions {
  readonly queue: string
  readonly model: string
  readonly kvDtype: "f16" | "f32"
  readonly pool?: string
  readonly problems: ReadonlyArray<Problem>
  readonly problemsFile: Option.Option<string>
  readonly fewShot: string
  readonly samplesPerProblem: number
  readonly blockSize: number
  readonly sampling: PipelineOptions["sampling"]
  readonly evaluate: boolean
  /** absent: --detach, return once the run is enqueued */
  readonly outDir?: string
  readonly progress: ProgressMode
}

/** The local pipeline's work as a run: the same prompts, the same sampling, stops included. */
export const sampleRunSpec = (options: QueuedSampleOptions): RunSpec => ({
  model: modelKey(options.model),
  kvDtype: options.kvDtype,
  ...(options.pool !== undefined ? { pool: options.pool } : {}),
  prefix: options.fewShot,
  problems: options.problems.map((p) => ({ id: p.id, prompt: renderProblemPrompt(p) })),
  samplesPerProblem: options.samplesPerProblem,
  blockSize: options.blockSize,
  sampling: { ...options.sampling, stop: STOP_SEQUENCES },
  extra: {
    ...Option.match(options.problemsFile, { onNone: () => ({}), onSome: (file) => ({ problemsFile: resolve(file) }) }),
    evaluate: options.evaluate
  } satisfies Submission
})

/** Enqueues the run; with an output folder, follows it to the end and writes its files there. */
export const sampleOnQueue = (options: QueuedSampleOptions) =>
  Effect.gen(function*() {
    const run = yield* enqueueRun(sampleRunSpec(options))
    const { address } = yield* QueueClient
    if (options.outDir === undefined) {
      yield* Console.log(run.id)
      yield* Console.error(`canopy: run ${run.id} enqueued (${run.jobs} jobs); canopy status ${run.id} --queue ${address.shown} shows it, canopy collect ${run.id} --queue ${address.shown} --out DIR writes its files`)
      return
    }
    yield* Console.error(`canopy: run ${run.id} enqueued on ${address.shown}: ${run.jobs} jobs for workers of ${run.model} (KV ${run.kvDtype}, pool ${run.pool})`)
    yield* followRun(run.id, options.progress)
    yield* collectAndWrite(run.id, { outDir: options.outDir, problems: options.problems, problemsSource: Option.getOrElse(options.problemsFile, () => "the built-in problems") })
  }).pipe(Effect.provide(QueueClient.layer(options.queue)))
