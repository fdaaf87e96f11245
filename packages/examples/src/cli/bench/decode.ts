/**
 * `canopy bench decode`: decode tokens/s against batch size and shared prefix
 * length — Hydragen, the baseline and the attention-free ceiling — on a
 * synthetic model (or any model folder).
 */
import {
  adapterName, Engine, Gpu, Model, type ModelConfig, ModelConfigError, PRESET_NAMES, PRESETS, isPresetName
} from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { decodeChartSvg, type DecodeReport, formatDecodeTable, runDecodeBench } from "../../bench/decodeBench.ts"
import { progressLine } from "../../terminal/progressLine.ts"
import { intListFlag, positiveInt } from "../flags.ts"

/** A preset, optionally with fewer layers so a large shape fits a machine's memory and time. */
const syntheticModel = (preset: string, layers: Option.Option<number>): ModelConfig => {
  if (!isPresetName(preset)) {
    throw new ModelConfigError({ field: "--preset", reason: `unknown preset ${JSON.stringify(preset)}; presets: ${PRESET_NAMES.join(", ")}` })
  }
  const base: ModelConfig = PRESETS[preset]
  return Option.match(layers, { onNone: () => base, onSome: (numLayers) => ({ ...base, numLayers }) })
}

export const benchDecodeCommand = Command.make(
  "decode",
  {
    preset: Flag.String("preset").pipe(Flag.withDescription(`synthetic model: ${PRESET_NAMES.join(", ")}`), Flag.withDefault("tiny")),
    layers: Flag.Int("layers").pipe(Flag.withDescription("use only this many layers of the preset (scale a large shape down)"), Flag.optional),
    batch: intListFlag("batch", "8,32,64", 1, "samples decoding together"),
    prefix: intListFlag("prefix", "256,1024", 1, "shared prefix tokens"),
    tokens: positiveInt("tokens", 16, "tokens decoded per sample"),
    repeats: positiveInt("repeats", 3, "timed rounds of every mode at each point, after an untimed warm-up (medians and ranges are reported)"),
    json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here (and the chart beside it, .svg)"), Flag.optional)
  },
  (flags) =>
    Effect.gen(function*() {
      const gpu = yield* Gpu
      const model = yield* Model
      const { engine } = yield* Engine
      const line = progressLine()
      const started = Date.now()
      const points = yield* Effect.promise(() =>
        runDecodeBench(engine, {
          batches: flags.batch,
          prefixes: flags.prefix,
          tokens: flags.tokens,
          modes: ["hydragen", "baseline", "none"],
          repeats: flags.repeats,
          onPoint: (text) => line.update(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)
        })
      )
      line.end()
      const c = model.config
      const report: DecodeReport = {
        adapter: adapterName(gpu),
        model: `synthetic ${flags.preset}: ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads}/${c.numKvHeads} heads`,
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
      Effect.provide(
        Layer.unwrap(
          Effect.try({
            try: () => syntheticModel(flags.preset, flags.layers),
            catch: (e) => e as ModelConfigError
          }).pipe(
            Effect.map((config) =>
              Engine.layer({ maxBatch: Math.max(...flags.batch) }).pipe(
                Layer.provideMerge(Model.layer({ kind: "synthetic", model: config, seed: 0 })),
                Layer.provideMerge(Gpu.layer())
              )
            )
          )
        )
      )
    )
).pipe(Command.withDescription("Decode tokens/s vs batch and shared prefix: hydragen, baseline and the attention-free ceiling"))
