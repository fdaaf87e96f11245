/**
 * What `canopy bench schedule` runs (the command and its help are in ../../bench/schedule.ts).
 */
import { adapterName, describeModelSource, Engine, Gpu, Model } from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Layer, Option } from "effect"
import { BUILTIN_PROBLEMS } from "../../../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../../../pipeline/prompt.ts"
import { checkModelSpec } from "../../../sampling/modelSource.ts"
import { modelStack } from "../../../sampling/stack.ts"
import { createStepwiseEngine, formatScheduleTable, runScheduleBench, type ScheduleReport } from "../../../bench/schedule.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchScheduleFlags } from "../../bench/schedule.ts"
import { InvalidFlag } from "../../errors.ts"
import { kvOptions } from "../../flags.ts"

/** Flags that would make the comparison meaningless, refused before the GPU opens. */
const checkFlags = (flags: BenchScheduleFlags) =>
  Effect.suspend(() => {
    const samples = flags.problems * flags.samples
    if (flags.minTokens > flags.maxTokens) {
      return Effect.fail(new InvalidFlag(`--min-tokens ${flags.minTokens} is more than --max-tokens ${flags.maxTokens}`))
    }
    if (flags.batch >= samples) {
      return Effect.fail(new InvalidFlag(
        `--max-batch ${flags.batch} holds all ${samples} samples (--problems × --samples) at once: there would be one wave and nothing to compare; give a smaller --max-batch`
      ))
    }
    return Effect.void
  })

const engineOptions = (flags: BenchScheduleFlags) => ({ maxBatch: flags.batch, ...kvOptions(flags.kvMemory, flags.kvDtype) })

const bench = (flags: BenchScheduleFlags) =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    const model = yield* Model
    const { engine } = yield* Engine
    const stepwise = yield* Effect.acquireRelease(
      Effect.promise(() => createStepwiseEngine(gpu.device, model, engine, engineOptions(flags))),
      (e) => Effect.sync(() => e.destroy())
    )
    const line = progressLine()
    const started = Date.now()
    const figures = yield* Effect.promise(() =>
      runScheduleBench(engine, {
        fewShot: FEW_SHOT_PROMPT,
        problems: BUILTIN_PROBLEMS.slice(0, flags.problems),
        samplesPerProblem: flags.samples,
        minTokens: flags.minTokens,
        maxTokens: flags.maxTokens,
        seed: flags.seed,
        repeats: flags.repeats,
        onProgress: (text) => line.update(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)
      }, stepwise)
    ).pipe(Effect.ensuring(Effect.sync(() => line.end())))
    const report: ScheduleReport = { adapter: adapterName(gpu), model: describeModelSource(model.source), ...figures }
    yield* Console.log(`adapter: ${report.adapter}; model: ${report.model}`)
    for (const row of formatScheduleTable(report)) yield* Console.log(row)
    if (Option.isSome(flags.json)) {
      const path = flags.json.value
      yield* Effect.promise(() => writeFile(path, JSON.stringify(report, null, 2)))
      yield* Console.log(`wrote ${path}`)
    }
  })

export const run = (flags: BenchScheduleFlags) =>
  Effect.gen(function*() {
    yield* checkFlags(flags)
    const dtype = Option.getOrUndefined(flags.dtype)
    yield* checkModelSpec(flags.model, dtype)
    yield* Effect.scoped(bench(flags)).pipe(
      Effect.provide(
        Engine.layer(engineOptions(flags)).pipe(Layer.provideMerge(modelStack(flags.model, 0, dtype)))
      )
    )
  })
