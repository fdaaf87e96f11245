/**
 * The GPU and the model a pipeline runs on, as one layer. A bad model spec
 * fails as a typed ModelConfigError when the layer is built.
 */
import { Gpu, Model, ModelConfigError, parseModelSource } from "@canopy/runtime"
import { Effect, Layer } from "effect"

export const modelStack = (model: string, modelSeed = 0) =>
  Layer.unwrap(
    Effect.try({
      try: () => parseModelSource(model, modelSeed),
      catch: (e) => (e instanceof ModelConfigError ? e : new ModelConfigError({ field: "--model", reason: String(e) }))
    }).pipe(Effect.map((source) => Model.layer(source).pipe(Layer.provideMerge(Gpu.layer()))))
  )
