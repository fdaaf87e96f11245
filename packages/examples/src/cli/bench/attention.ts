/**
 * `canopy bench attention`: Hydragen tree attention against per-sequence paged
 * decoding over a sweep of batch × shared prefix × suffix, with the roofline.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intFlag, intListFlag, kvDtypeFlag } from "../flags.ts"

const file = (name: string, description: string) => Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

const flags = {
  batch: intListFlag("batch", "8,32,64", 1, "sequences sharing the prefix"),
  prefix: intListFlag("prefix", "256,1024", 1, "shared prefix tokens"),
  suffix: intListFlag("suffix", "32", 0, "tokens of each sequence's own suffix"),
  heads: intFlag("heads", 8, "query heads"),
  kvHeads: intFlag("kv-heads", 1, "KV heads (heads must be a multiple)"),
  headDim: intFlag("head-dim", 64, "head dimension (a multiple of 8)"),
  blockSize: intFlag("block-size", 16, "tokens per KV block"),
  suffixKernel: Flag.Literals("suffix-kernel", ["decode", "level"]).pipe(
    Flag.withDescription("where Hydragen attends each sequence's own suffix: the decode kernel, or the level kernel with one-row tiles"),
    Flag.withDefault("decode")
  ),
  kvDtype: kvDtypeFlag.pipe(
    Flag.withDescription("element type of the KV pools: f16 (the default, the engine's; f32 pools are measured alongside for the ratio) or f32 alone")
  ),
  repeats: intFlag("repeats", 7, "rounds timed per point, at most, each running every method once in rotating order, after a warm-up (the median and range are reported)"),
  roofline: file("roofline", "roofline JSON from `canopy bench roofline --json` (measured now when absent)"),
  json: file("json", "write the report as JSON here (and the chart beside it, .svg)"),
  svg: file("svg", "write the speed-up chart here")
}

export type BenchAttentionFlags = Command.Command.Config.Infer<typeof flags>

export const benchAttentionCommand = Command.make("attention", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/attention.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Hydragen tree attention vs per-sequence paged decoding: batch × prefix × suffix sweep with roofline, f16 KV against f32"))
