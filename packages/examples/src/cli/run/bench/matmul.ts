/**
 * What `canopy bench matmul` runs (the command and its help are in ../../bench/matmul.ts).
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { defaultMatmulSize, formatMatmulTable, runMatmulBench } from "../../../bench/matmulBench.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchMatmulFlags } from "../../bench/matmul.ts"

export const run = (flags: BenchMatmulFlags) =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    const defaults = defaultMatmulSize(gpu.adapter.software)
    const line = progressLine()
    const started = Date.now()
    const report = yield* Effect.tryPromise(() =>
      runMatmulBench(gpu.device, adapterName(gpu), {
        rows: flags.rows,
        inDim: Option.getOrElse(flags.in, () => defaults.inDim),
        outDim: Option.getOrElse(flags.out, () => defaults.outDim),
        weights: flags.dtype,
        input: flags.input,
        warmup: flags.warmup,
        rounds: flags.rounds,
        dispatches: Option.getOrElse(flags.dispatches, () => defaults.dispatches),
        onProgress: (text) => line.update(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)
      })
    ).pipe(Effect.ensuring(Effect.sync(() => line.end())))
    for (const row of formatMatmulTable(report)) yield* Console.log(row)
    const json = Option.getOrUndefined(flags.json)
    if (json !== undefined) {
      yield* Effect.promise(() => writeFile(json, `${JSON.stringify(report, null, 2)}\n`))
      yield* Console.log(`wrote ${json}`)
    }
  }).pipe(Effect.provide(Gpu.layer()))
