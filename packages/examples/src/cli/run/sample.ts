/**
 * What `canopy sample` runs (the command and its help are in ../sample.ts).
 */
import type { WeightType } from "@canopy/kernels"
import { MAX_RUN_SAMPLES } from "@canopy/queue"
import { MAX_REQUEST_SAMPLES } from "@canopy/runtime"
import { readFile } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { modelKeyOf } from "../../distributed/modelKey.ts"
import { sampleOnQueue } from "../../distributed/submit.ts"
import { BUILTIN_PROBLEMS } from "../../pipeline/data/builtin-problems.ts"
import { type Problem, ProblemFileError, readProblemsFile } from "../../pipeline/problems.ts"
import type { ProgressMode } from "../../pipeline/progress.ts"
import { FEW_SHOT_PROMPT } from "../../pipeline/prompt.ts"
import { checkModelSpec } from "../../sampling/modelSource.ts"
import { type PipelineOptions, runPipeline } from "../../sampling/pipeline.ts"
import { modelStack } from "../../sampling/stack.ts"
import { summaryLines } from "../../sampling/summary.ts"
import { causeText, InvalidFlag, SampleCountError } from "../errors.ts"
import { prepareOutDir } from "../outDir.ts"
import { defaultOutDir, type SampleFlags } from "../sample.ts"
import { engineOptionsOf } from "./engineOptions.ts"

/** Runs the pipeline on `model` (a synthetic one's weights as `dtype`) and prints its summary; returns the result for callers that add to it. */
export const runAndSummarize = (model: string, options: PipelineOptions, dtype?: WeightType) =>
  runPipeline(options).pipe(
    Effect.tap((result) => Console.log(["", ...summaryLines(result)].join("\n"))),
    Effect.provide(modelStack(model, 0, dtype))
  )

const loadProblems = (file: Option.Option<string>, limit: Option.Option<number>) =>
  Effect.map(
    Option.match(file, { onNone: () => Effect.succeed<ReadonlyArray<Problem>>(BUILTIN_PROBLEMS), onSome: readProblemsFile }),
    (problems) => Option.match(limit, { onNone: () => problems, onSome: (n) => problems.slice(0, n) })
  )

const loadFewShot = (file: Option.Option<string>) =>
  Option.match(file, {
    onNone: () => Effect.succeed(FEW_SHOT_PROMPT),
    onSome: (path) =>
      Effect.tryPromise({ try: () => readFile(path, "utf8"), catch: (e) => new ProblemFileError({ path, message: causeText(e) }) })
  })

/** Flags a queued run cannot honour: they are the local run's, or each worker's own. */
const checkQueuedFlags = (flags: {
  readonly compare: boolean
  readonly scheduler: "continuous" | "waves"
  readonly kvMemory: Option.Option<number>
  readonly noTune: boolean
  readonly out: Option.Option<string>
  readonly detach: boolean
}) =>
  Effect.suspend(() => {
    const refuse = (text: string) => Effect.fail(new InvalidFlag(text))
    if (flags.compare) return refuse("--compare times the three modes on this machine; it does not go with --queue")
    if (flags.scheduler === "waves") return refuse("--scheduler waves is for comparing on this machine; workers batch their jobs continuously, so it does not go with --queue")
    if (Option.isSome(flags.kvMemory)) return refuse("--kv-memory is each worker's (canopy worker --kv-memory); it does not go with --queue")
    if (flags.noTune) return refuse("--no-tune is each worker's (canopy worker --no-tune); it does not go with --queue")
    if (flags.detach && Option.isSome(flags.out)) return refuse("--detach writes no files: give --out to canopy collect RUN instead")
    return Effect.void
  })

export const run = (flags: SampleFlags) =>
  Effect.gen(function*() {
    // Every input is read and checked before the model loads (minutes and gigabytes for a real one).
    const problems = yield* loadProblems(flags.problems, flags.limit)
    // a local run is one engine request; a queued one is many, bounded by what Redis is asked to hold
    const limit = Option.isSome(flags.queue) ? MAX_RUN_SAMPLES : MAX_REQUEST_SAMPLES
    if (problems.length * flags.samples > limit) {
      return yield* new SampleCountError({ samplesPerProblem: flags.samples, problems: problems.length, limit })
    }
    const fewShot = yield* loadFewShot(flags.fewShot)
    const dtype = Option.getOrUndefined(flags.dtype)
    yield* checkModelSpec(flags.model, dtype)
    const progress: ProgressMode = flags.quiet ? "silent" : "auto"
    if (Option.isSome(flags.queue)) {
      yield* checkQueuedFlags(flags)
      return yield* sampleOnQueue({
        queue: flags.queue.value,
        model: modelKeyOf(flags.model, dtype),
        kvDtype: flags.kvDtype,
        ...Option.match(flags.pool, { onNone: () => ({}), onSome: (pool) => ({ pool }) }),
        problems,
        problemsFile: flags.problems,
        fewShot,
        samplesPerProblem: flags.samples,
        blockSize: flags.block,
        sampling: { temperature: flags.temperature, topK: flags.topK, topP: flags.topP, seed: flags.seed, maxTokens: flags.maxTokens },
        evaluate: flags.evaluate,
        ...(flags.detach ? {} : { outDir: yield* prepareOutDir(Option.getOrElse(flags.out, defaultOutDir)) }),
        progress
      })
    }
    if (flags.detach) return yield* Effect.fail(new InvalidFlag("--detach is for runs on a queue: give --queue redis://HOST:PORT/N too"))
    yield* runAndSummarize(flags.model, {
      problems,
      fewShot,
      samplesPerProblem: flags.samples,
      sampling: {
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        seed: flags.seed,
        maxTokens: flags.maxTokens
      },
      outDir: yield* prepareOutDir(Option.getOrElse(flags.out, defaultOutDir)),
      evaluate: flags.evaluate,
      compare: flags.compare,
      repeats: flags.repeats,
      scheduling: flags.scheduler,
      engine: engineOptionsOf(flags),
      progress
    }, dtype)
  })
