/**
 * `canopy bench roofline`: the current adapter's copy bandwidth and f32
 * matmul rate, the two ceilings attention benchmarks are measured against.
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { writeFile } from "node:fs/promises"
import { defaultRooflineOptions, formatRoofline, measureRooflineRounds, type RooflineReport } from "../../bench/rooflineReport.ts"
import { InvalidFlag } from "../errors.ts"
import { positiveInt } from "../flags.ts"

export const benchRooflineCommand = Command.make(
  "roofline",
  {
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
  },
  (flags) =>
    Effect.gen(function*() {
      const gpu = yield* Gpu
      const defaults = defaultRooflineOptions(gpu.adapter.software)
      const matmulSize = Option.getOrElse(flags.size, () => defaults.matmulSize)
      const copyMib = Option.getOrUndefined(flags.copyMib)
      if (matmulSize < 16) return yield* Effect.fail(new InvalidFlag(`--size must be at least 16, got ${matmulSize}`))
      if (copyMib !== undefined && copyMib < 1) return yield* Effect.fail(new InvalidFlag(`--copy-mib must be positive, got ${copyMib}`))
      const copyBytes = copyMib === undefined ? defaults.copyBytes : copyMib * 2 ** 20
      const figures = yield* Effect.tryPromise(() => measureRooflineRounds(gpu.device, { copyBytes, matmulSize }, flags.repeats))
      const report: RooflineReport = { adapter: adapterName(gpu), software: gpu.adapter.software, ...figures }
      for (const line of formatRoofline(report)) yield* Console.log(line)
      if (Option.isSome(flags.json)) {
        const path = flags.json.value
        yield* Effect.tryPromise(() => writeFile(path, `${JSON.stringify(report, null, 2)}\n`))
        yield* Console.log(`json:       ${path}`)
      }
    })
).pipe(
  Command.withDescription("Measure the adapter's copy bandwidth and f32 matmul rate (the roofline)"),
  Command.provide(Gpu.layer())
)
