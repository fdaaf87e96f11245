/**
 * `canopy bench decode`: decode tokens/s against batch size and shared prefix
 * length — Hydragen, the baseline and the attention-free ceiling — on a
 * synthetic model (or any model folder).
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { PRESET_NAMES } from "../bounds.ts"
import { intListFlag, kvDtypeFlag, noTuneFlag, positiveInt, weightDtypeFlag } from "../flags.ts"

const flags = {
  preset: Flag.String("preset").pipe(Flag.withDescription(`synthetic model: ${PRESET_NAMES.join(", ")}`), Flag.withDefault("tiny")),
  layers: Flag.Int("layers").pipe(Flag.withDescription("use only this many layers of the preset (scale a large shape down)"), Flag.optional),
  dtype: weightDtypeFlag,
  batch: intListFlag("batch", "8,32,64", 1, "samples decoding together"),
  prefix: intListFlag("prefix", "256,1024", 1, "shared prefix tokens"),
  tokens: positiveInt("tokens", 16, "tokens decoded per sample"),
  kvDtype: kvDtypeFlag.pipe(
    Flag.withDescription("element type of the KV cache: f16 (the default, the engine's; Hydragen and the baseline also decode on an f32 cache, for the ratio) or f32 alone")
  ),
  repeats: positiveInt("repeats", 3, "timed rounds of every mode at each point, after an untimed warm-up (medians and ranges are reported)"),
  formerKernels: Flag.Boolean("former-kernels").pipe(
    Flag.withDescription("Hydragen and the baseline also on the kernels Canopy ran before tuning (stacked level tile, default matmul), for the ratio"),
    Flag.withDefault(false)
  ),
  json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here (and the chart beside it, .svg)"), Flag.optional),
  noTune: noTuneFlag
}

export type BenchDecodeFlags = Command.Command.Config.Infer<typeof flags>

export const benchDecodeCommand = Command.make("decode", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/decode.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Decode tokens/s vs batch and shared prefix: hydragen, baseline and the attention-free ceiling, f16 KV against f32"))
