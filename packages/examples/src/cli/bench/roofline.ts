/**
 * `canopy bench roofline`: the current adapter's copy bandwidth and f32
 * matmul rate, the two ceilings attention benchmarks are measured against.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { positiveInt } from "../flags.ts"

const flags = {
  size: Flag.Int("size").pipe(
    Flag.withDescription("n of the n×n·n×n f32 matmul (default 512 on a software adapter, 4096 on a GPU)"),
    Flag.optional
  ),
  copyMib: Flag.Int("copy-mib").pipe(
    Flag.withDescription("MiB copied by the bandwidth kernel (default 64 on a software adapter, 1024 on a GPU)"),
    Flag.optional
  ),
  repeats: positiveInt("repeats", 3, "timed rounds after an untimed one (medians and ranges are reported)"),
  json: Flag.String("json").pipe(Flag.withDescription("also write the figures to this JSON file"), Flag.optional)
}

export type BenchRooflineFlags = Command.Command.Config.Infer<typeof flags>

export const benchRooflineCommand = Command.make("roofline", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/roofline.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Measure the adapter's copy bandwidth and f32 matmul rate (the roofline)"))
