/**
 * `canopy bench schedule`: continuous batching against waves on a workload
 * whose sample lengths vary — each sample of each problem its own node under
 * the few-shot prompt, with its own max tokens — on one engine whose batch is
 * narrower than the samples; and continuous batching again on an engine that
 * decodes stepwise (overlap off). Prints tokens/s of each, the ratios, and each
 * one's idle share and mean batch; fails if any two give other completions.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { BUILTIN_PROBLEMS } from "../../pipeline/data/builtin-problems.ts"
import { kvDtypeFlag, kvMemoryFlag, MAX_BATCH, MAX_SEED, modelFlag, positiveInt, samplingFlags, weightDtypeFlag } from "../flags.ts"

const flags = {
  model: modelFlag,
  dtype: weightDtypeFlag,
  problems: positiveInt("problems", 4, "built-in problems under the few-shot prompt, the first P of them", BUILTIN_PROBLEMS.length),
  samples: positiveInt("samples", 16, "samples per problem, each with its own max tokens", 4096),
  minTokens: positiveInt("min-tokens", 4, "shortest max tokens a sample draws", 4096),
  maxTokens: positiveInt("max-tokens", 64, "longest max tokens a sample draws, each length equally likely from --min-tokens up", 4096),
  batch: positiveInt("max-batch", 16, "most samples decoding at once; below problems × samples, so that waves form", MAX_BATCH),
  seed: samplingFlags.seed.pipe(Flag.withDescription(`seeds the drawn lengths and the sampling, 0 to ${MAX_SEED} (default 0)`)),
  repeats: positiveInt("repeats", 3, "timed rounds of both modes, after an untimed warm-up of each (medians and ranges are reported)"),
  kvMemory: kvMemoryFlag,
  kvDtype: kvDtypeFlag,
  json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here"), Flag.optional)
}

export type BenchScheduleFlags = Command.Command.Config.Infer<typeof flags>

export const benchScheduleCommand = Command.make("schedule", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/schedule.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Continuous batching vs waves, and overlapped vs stepwise decoding, on samples of varied lengths: tokens/s, idle share and mean batch of each"))
