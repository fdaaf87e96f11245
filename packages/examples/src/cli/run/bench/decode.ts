/**
 * What `canopy bench decode` runs (the command and its help are in ../../bench/decode.ts).
 */
import {
  adapterName, Engine, type EngineOptions, Gpu, Model, type ModelConfig, ModelConfigError, PRESET_NAMES, PRESETS, isPresetName, TreeEngine
} from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Layer, Option } from "effect"
import {
  decodeChartSvg, type DecodeReport, type DecodeVariant, decodeVariants, formatDecodeTable, formerKernels, runDecodeBench
} from "../../../bench/decodeBench.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchDecodeFlags } from "../../bench/decode.ts"
import { describeEngineTuning, tuneSetting } from "../tune.ts"

/** A preset, optionally with fewer layers so a large shape fits a machine's memory and time. */
const syntheticModel = (preset: string, layers: Option.Option<number>): ModelConfig => {
  if (!isPresetName(preset)) {
    throw new ModelConfigError({ field: "--preset", reason: `unknown preset ${JSON.stringify(preset)}; presets: ${PRESET_NAMES.join(", ")}` })
  }
  const base: ModelConfig = PRESETS[preset]
  return Option.match(layers, { onNone: () => base, onSome: (numLayers) => ({ ...base, numLayers }) })
}

/** GPU memory in the unit that reads best: MiB below a GiB. */
const memory = (bytes: number): string => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`)

export const run = (flags: BenchDecodeFlags) =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    const model = yield* Model
    const { engine } = yield* Engine
    // the other engines over the same model, freed with the command's scope: the f32 reference of an f16 run, the former kernels
    const otherEngine = (options: EngineOptions) =>
      Effect.acquireRelease(
        Effect.promise(() => TreeEngine.create(gpu.device, model, { maxBatch: Math.max(...flags.batch), tune: tuneSetting(flags.noTune), ...options })),
        (e) => Effect.sync(() => e.destroy())
      )
    const reference = flags.kvDtype === "f16" ? yield* otherEngine({ kvDtype: "f32" }) : undefined
    const former = flags.formerKernels
      ? yield* otherEngine({ kvDtype: flags.kvDtype, kernels: formerKernels(gpu.device, model.config.headDim) })
      : undefined
    const engineFor = (v: DecodeVariant) => (v.kernels === "former" ? former! : v.kvDtype === flags.kvDtype ? engine : reference!)
    const described = [[engine, ""], [reference, ""], [former, ", former kernels"]] as const
    for (const [e, what] of described) if (e !== undefined) yield* Console.log(`${e.kv.kvDtype} KV${what}: ${describeEngineTuning(e.tuning)}`)
    const line = progressLine()
    const started = Date.now()
    const points = yield* Effect.promise(() =>
      runDecodeBench(engineFor, {
        batches: flags.batch,
        prefixes: flags.prefix,
        tokens: flags.tokens,
        variants: decodeVariants(flags.kvDtype, flags.formerKernels),
        repeats: flags.repeats,
        onPoint: (text) => line.update(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)
      })
    )
    line.end()
    const c = model.config
    const report: DecodeReport = {
      adapter: adapterName(gpu),
      model: `synthetic ${flags.preset}: ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads}/${c.numKvHeads} heads, ${model.weights.weightType} weights (${memory(model.weights.bytes)})`,
      kvDtype: flags.kvDtype,
      tokens: flags.tokens,
      repeats: flags.repeats,
      points
    }
    for (const row of formatDecodeTable(report)) yield* Console.log(row)
    if (Option.isSome(flags.json)) {
      const path = flags.json.value
      yield* Effect.promise(() => writeFile(path, JSON.stringify(report, null, 2)))
      const svg = `${path.replace(/\.json$/i, "")}.svg`
      yield* Effect.promise(() => writeFile(svg, decodeChartSvg(report)))
      yield* Console.log(`wrote ${path} and ${svg}`)
    }
  }).pipe(
    // the reference engine is released here, before the device the layers below hold
    Effect.scoped,
    Effect.provide(
      Layer.unwrap(
        Effect.try({
          try: () => syntheticModel(flags.preset, flags.layers),
          catch: (e) => e as ModelConfigError
        }).pipe(
          Effect.map((config) =>
            Engine.layer({ maxBatch: Math.max(...flags.batch), kvDtype: flags.kvDtype, tune: tuneSetting(flags.noTune) }).pipe(
              Layer.provideMerge(Model.layer({ kind: "synthetic", model: config, seed: 0, dtype: Option.getOrElse(flags.dtype, () => "f32" as const) })),
              Layer.provideMerge(Gpu.layer())
            )
          )
        )
      )
    )
  )
