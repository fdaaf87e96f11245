/**
 * `canopy sample`: the sampling pipeline from the command line — problems
 * (APPS-style JSONL or the built-in set) under a few-shot prompt, n samples
 * each, written as JSONL with a report; `--evaluate` adds pass@k and
 * `--compare` times the three decoding modes on the same work.
 */
import { MAX_REQUEST_SAMPLES } from "@canopy/runtime"
import { readFile } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { BUILTIN_PROBLEMS } from "../pipeline/data/builtin-problems.ts"
import { type Problem, ProblemFileError, readProblemsFile } from "../pipeline/problems.ts"
import type { ProgressMode } from "../pipeline/progress.ts"
import { FEW_SHOT_PROMPT } from "../pipeline/prompt.ts"
import { type PipelineOptions, runPipeline } from "../sampling/pipeline.ts"
import { modelStack } from "../sampling/stack.ts"
import { summaryLines } from "../sampling/summary.ts"
import { causeText, SampleCountError } from "./errors.ts"
import { checkModelSpec, kvDtypeFlag, kvMemoryFlag, kvOptions, modelFlag, positiveInt, samplingFlags } from "./flags.ts"
import { prepareOutDir } from "./outDir.ts"

/** `canopy-out/<timestamp>`, safe as a folder name everywhere. */
export const defaultOutDir = (): string => `canopy-out/${new Date().toISOString().replace(/[:.]/g, "-")}`

/** Runs the pipeline on `model` and prints its summary; returns the result for callers that add to it. */
export const runAndSummarize = (model: string, options: PipelineOptions) =>
  runPipeline(options).pipe(
    Effect.tap((result) => Console.log(["", ...summaryLines(result)].join("\n"))),
    Effect.provide(modelStack(model))
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

export const sampleCommand = Command.make(
  "sample",
  {
    problems: Flag.String("problems").pipe(Flag.withDescription("APPS-style JSONL problems (default: the built-in set)"), Flag.optional),
    limit: Flag.Int("limit").pipe(
      Flag.withDescription("use only the first N problems"),
      Flag.filter((n) => n >= 1, (n) => `--limit must be at least 1, got ${n}`),
      Flag.optional
    ),
    fewShot: Flag.String("few-shot").pipe(Flag.withDescription("file holding the few-shot prompt (default: the built-in one)"), Flag.optional),
    samples: positiveInt("samples", 8, "samples per problem", MAX_REQUEST_SAMPLES),
    model: modelFlag,
    ...samplingFlags,
    out: Flag.String("out").pipe(Flag.withDescription("output folder (default: canopy-out/<timestamp>)"), Flag.optional),
    evaluate: Flag.Boolean("evaluate").pipe(Flag.withDescription("run each sample on the problem's tests; report pass@k"), Flag.withDefault(false)),
    compare: Flag.Boolean("compare").pipe(
      Flag.withDescription("also run baseline attention and single-level sharing on the same work and compare times"),
      Flag.withDefault(false)
    ),
    repeats: positiveInt("repeats", 3, "with --compare: timed rounds of the three modes, after an untimed warm-up of each"),
    kvMemory: kvMemoryFlag,
    kvDtype: kvDtypeFlag,
    quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no progress output"), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function*() {
      // Every input is read and checked before the model loads (minutes and gigabytes for a real one).
      const problems = yield* loadProblems(flags.problems, flags.limit)
      if (problems.length * flags.samples > MAX_REQUEST_SAMPLES) {
        return yield* new SampleCountError({ samplesPerProblem: flags.samples, problems: problems.length, limit: MAX_REQUEST_SAMPLES })
      }
      const fewShot = yield* loadFewShot(flags.fewShot)
      yield* checkModelSpec(flags.model)
      const outDir = yield* prepareOutDir(Option.getOrElse(flags.out, defaultOutDir))
      const progress: ProgressMode = flags.quiet ? "silent" : "auto"
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
        outDir,
        evaluate: flags.evaluate,
        compare: flags.compare,
        repeats: flags.repeats,
        engine: kvOptions(flags.kvMemory, flags.kvDtype),
        progress
      })
    })
).pipe(Command.withDescription("Sample solutions to programming problems under a shared few-shot prompt; evaluate and compare modes"))
