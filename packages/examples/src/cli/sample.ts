/**
 * `canopy sample`: the sampling pipeline from the command line — problems
 * (APPS-style JSONL or the built-in set) under a few-shot prompt, n samples
 * each, written as JSONL with a report; `--evaluate` adds pass@k and
 * `--compare` times the three decoding modes on the same work.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { poolFlag, queueFlag } from "../distributed/flags.ts"
import { MAX_REQUEST_SAMPLES } from "./bounds.ts"
import { kvDtypeFlag, kvMemoryFlag, modelFlag, noOverlapFlag, noTuneFlag, positiveInt, samplingFlags, schedulerFlag, weightDtypeFlag } from "./flags.ts"

/** `canopy-out/<timestamp>`, safe as a folder name everywhere. */
export const defaultOutDir = (): string => `canopy-out/${new Date().toISOString().replace(/[:.]/g, "-")}`

const flags = {
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
  scheduler: schedulerFlag,
  kvMemory: kvMemoryFlag,
  kvDtype: kvDtypeFlag,
  noTune: noTuneFlag,
  noOverlap: noOverlapFlag,
  dtype: weightDtypeFlag,
  quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no progress output"), Flag.withDefault(false)),
  queue: queueFlag.pipe(Flag.optional),
  detach: Flag.Boolean("detach").pipe(
    Flag.withDescription("with --queue: print the run id and return once it is enqueued (canopy collect RUN writes its files)"),
    Flag.withDefault(false)
  ),
  block: positiveInt("block", 16, "with --queue: samples per job (a job is one problem's block of samples)", MAX_REQUEST_SAMPLES),
  pool: poolFlag
}

export type SampleFlags = Command.Command.Config.Infer<typeof flags>

export const sampleCommand = Command.make("sample", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/sample.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Sample solutions to programming problems under a shared few-shot prompt; evaluate and compare modes"))
