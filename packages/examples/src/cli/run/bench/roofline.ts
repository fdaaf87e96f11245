/**
 * What `canopy bench roofline` runs (the command and its help are in ../../bench/roofline.ts).
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { writeFile } from "node:fs/promises"
import { defaultRooflineOptions, formatRoofline, measureRooflineRounds, type RooflineReport } from "../../../bench/rooflineReport.ts"
import type { BenchRooflineFlags } from "../../bench/roofline.ts"
import { InvalidFlag } from "../../errors.ts"

export const run = (flags: BenchRooflineFlags) =>
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
  }).pipe(Effect.provide(Gpu.layer()))
