/**
 * The GPU and the model a pipeline runs on, as one layer. A bad model spec
 * fails as a typed ModelConfigError (a --dtype with a folder, InvalidFlag)
 * when the layer is built. Reading a model
 * folder (gigabytes) shows its progress on standard error.
 */
import type { WeightType } from "@canopy/kernels"
import { checkModelSource, Gpu, Model, ModelConfigError, type ModelLoadError } from "@canopy/runtime"
import { Effect, Layer } from "effect"
import { InvalidFlag } from "../cli/errors.ts"
import { modelSourceOf } from "./modelSource.ts"
import { progressLine } from "../terminal/progressLine.ts"

/** "loading weights: 120/291 tensors", rewritten on a terminal, every tenth elsewhere. */
const weightsProgress = (): ((loaded: number, total: number) => void) => {
  const line = progressLine()
  let shownTenth = -1
  return (loaded, total) => {
    const tenth = Math.floor((10 * loaded) / total)
    if (process.stderr.isTTY || tenth > shownTenth) line.update(`loading weights: ${loaded}/${total} tensors`)
    shownTenth = tenth
    if (loaded === total) line.end()
  }
}

/** The model and the GPU for `--model` (and `--dtype`, for a synthetic model; a folder loads as stored). */
export const modelStack = (model: string, modelSeed = 0, dtype?: WeightType) =>
  Layer.unwrap(
    Effect.try({
      try: () => modelSourceOf(model, dtype, modelSeed),
      catch: (e) => (e instanceof ModelConfigError || e instanceof InvalidFlag ? e : new ModelConfigError({ field: "--model", reason: String(e) }))
    }).pipe(
      // A model folder's files and config are checked before the GPU is opened, so a bad --model is reported with nothing acquired.
      Effect.tap((source) =>
        Effect.tryPromise({
          try: () => checkModelSource(source),
          catch: (e): ModelLoadError =>
            typeof e === "object" && e !== null && "_tag" in e && ["ModelConfigError", "SafetensorsError", "UnsupportedDtype", "TensorShapeMismatch", "ModelFileError", "TokenizerError"].includes(String(e._tag))
              ? (e as ModelLoadError)
              : new ModelConfigError({ field: "--model", reason: e instanceof Error ? e.message : String(e) })
        })
      ),
      Effect.map((source) =>
        Model.layer(source, source.kind === "folder" ? { onProgress: weightsProgress() } : {}).pipe(Layer.provideMerge(Gpu.layer()))
      )
    )
  )
