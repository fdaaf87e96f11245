/**
 * The model as an Effect service: loaded (or synthesized) onto the Gpu's
 * device for the layer's lifetime; its GPU weights are freed when the scope closes.
 */
import { Context, Effect, Layer } from "effect"
import { Gpu } from "./Gpu.ts"
import { ModelConfigError, type ModelLoadError } from "./model/errors.ts"
import { type LoadedModel, loadModel, type LoadModelOptions, type ModelSource } from "./model/model.ts"
import { isPresetName, PRESET_NAMES } from "./model/synthetic.ts"

/** `synthetic:PRESET` or a Hugging Face model folder. */
export const parseModelSource = (spec: string, seed = 0): ModelSource => {
  if (spec.startsWith("synthetic:")) {
    const name = spec.slice("synthetic:".length)
    if (!isPresetName(name)) {
      throw new ModelConfigError({ field: "--model", reason: `unknown preset ${JSON.stringify(name)}; presets: ${PRESET_NAMES.join(", ")}` })
    }
    return { kind: "synthetic", model: name, seed }
  }
  return { kind: "folder", dir: spec }
}

export const describeModelSource = (source: ModelSource): string =>
  source.kind === "folder" ? source.dir : `synthetic:${typeof source.model === "string" ? source.model : "custom"} (seed ${source.seed})`

const isModelLoadError = (e: unknown): e is ModelLoadError =>
  typeof e === "object" && e !== null && "_tag" in e &&
  ["ModelConfigError", "SafetensorsError", "UnsupportedDtype", "TensorShapeMismatch", "ModelFileError", "TokenizerError"]
    .includes((e as { _tag: string })._tag)

export class Model extends Context.Service<Model, LoadedModel & { readonly source: ModelSource }>()("@canopy/runtime/Model") {
  static readonly layer = (source: ModelSource, options: LoadModelOptions = {}): Layer.Layer<Model, ModelLoadError, Gpu> =>
    Layer.effect(
      Model,
      Effect.gen(function*() {
        const gpu = yield* Gpu
        const model = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => loadModel(gpu.device, source, options),
            catch: (e) => (isModelLoadError(e) ? e : new ModelConfigError({ field: "model", reason: String(e) }))
          }),
          (m) => Effect.sync(() => m.weights.destroy())
        )
        return { ...model, source }
      })
    )
}
