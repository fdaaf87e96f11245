/**
 * Promise entry points. A session holds the GPU, the model and one engine, so
 * its runs share the engine's KV cache: a second run over the same few-shot
 * prefix skips that prefill. `runPromise` is one run in a session of its own.
 */
import type { OpenGpuOptions } from "@canopy/kernels"
import {
  adapterName, describeModelSource, Engine, type EngineOptions, Gpu, Model, ModelConfigError, parseModelSource
} from "../index.ts"
import { Effect, Layer, ManagedRuntime } from "effect"
import type { PromptNode } from "./PromptNode.ts"
import { type PromptRun, run, type RunOptions } from "./run.ts"

export interface SessionOptions {
  /** `synthetic:tiny` (default) or a Hugging Face Llama-family folder */
  readonly model?: string
  /** seeds synthetic weights */
  readonly modelSeed?: number
  readonly engine?: EngineOptions
  readonly gpu?: OpenGpuOptions
}

export interface Session {
  readonly adapter: string
  readonly model: string
  run(root: PromptNode, options?: RunOptions): Promise<PromptRun>
  /** Frees the engine, the model and the device. */
  close(): Promise<void>
}

/** GPU, model and engine as one layer, for Effect programs that want the same stack. */
export const sessionLayer = (options: SessionOptions = {}) =>
  Layer.unwrap(
    Effect.try({
      try: () => parseModelSource(options.model ?? "synthetic:tiny", options.modelSeed ?? 0),
      catch: (e) => (e instanceof ModelConfigError ? e : new ModelConfigError({ field: "model", reason: String(e) }))
    }).pipe(
      Effect.map((source) =>
        Engine.layer(options.engine).pipe(Layer.provideMerge(Model.layer(source)), Layer.provideMerge(Gpu.layer(options.gpu)))
      )
    )
  )

export const openSession = async (options: SessionOptions = {}): Promise<Session> => {
  const runtime = ManagedRuntime.make(sessionLayer(options))
  try {
    const { adapter, model } = await runtime.runPromise(Effect.gen(function*() {
      const gpu = yield* Gpu
      const m = yield* Model
      yield* Engine
      return { adapter: adapterName(gpu), model: describeModelSource(m.source) }
    }))
    return {
      adapter,
      model,
      run: (root, runOptions) => runtime.runPromise(run(root, runOptions)),
      close: () => runtime.dispose()
    }
  } catch (e) {
    await runtime.dispose()
    throw e
  }
}

/** Opens a session, runs the tree and closes the session. */
export const runPromise = async (root: PromptNode, options: SessionOptions & RunOptions = {}): Promise<PromptRun> => {
  const session = await openSession(options)
  try {
    return await session.run(root, options)
  } finally {
    await session.close()
  }
}
