/**
 * What `canopy bench step` runs (the command and its help are in ../../bench/step.ts).
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { runStepBench } from "../../../bench/stepBench.ts"
import { formatStepTable, stepReport } from "../../../bench/stepReport.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchStepFlags } from "../../bench/step.ts"
import { InvalidFlag } from "../../errors.ts"
import { tuneSetting } from "../tune.ts"

export const run = (flags: BenchStepFlags) =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    const layers = Option.getOrUndefined(flags.layers)
    const heads = Option.getOrUndefined(flags.heads)
    const line = progressLine()
    const started = Date.now()
    const points = yield* Effect.tryPromise({
      try: () => runStepBench(gpu.device, {
        preset: flags.preset,
        ...(layers === undefined ? {} : { layers }),
        ...(heads === undefined ? {} : { heads }),
        batches: flags.batch,
        warmup: flags.warmup,
        steps: flags.steps,
        separateMerge: flags.separateMerge,
        separateRope: flags.separateRope,
        tune: tuneSetting(flags.noTune, (text) => line.update(text)),
        onProgress: (text) => line.update(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)
      }),
      // a batch the flags let through but the benchmark's tree cannot hold
      catch: (e) => (e instanceof RangeError ? new InvalidFlag(e.message) : e)
    }).pipe(Effect.ensuring(Effect.sync(() => line.end())))
    const report = stepReport(adapterName(gpu), { preset: flags.preset, layers, heads }, flags.warmup, flags.steps, points)
    for (const row of formatStepTable(report)) yield* Console.log(row)
    const json = Option.getOrUndefined(flags.json)
    if (json !== undefined) {
      yield* Effect.promise(() => writeFile(json, JSON.stringify(report, null, 2)))
      yield* Console.log(`wrote ${json}`)
    }
  }).pipe(Effect.provide(Gpu.layer()))
