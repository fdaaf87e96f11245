/**
 * The GPU as an Effect service: adapter + device acquired in a Scope (hardware
 * first, the software adapter when there is none) and destroyed when the scope
 * closes. The Dawn instance lives on the handle for exactly as long as the device.
 */
import { describeAdapter, GpuNoAdapter, openGpu, type GpuHandle, type OpenGpuOptions } from "@canopy/kernels"
import { Context, Effect, Layer } from "effect"

export class Gpu extends Context.Service<Gpu, GpuHandle>()("@canopy/runtime/Gpu") {
  /** Opens the device for the layer's lifetime. */
  static readonly layer = (options: OpenGpuOptions = {}): Layer.Layer<Gpu, GpuNoAdapter> =>
    Layer.effect(
      Gpu,
      Effect.acquireRelease(
        Effect.tryPromise({
          try: () => openGpu(options),
          catch: (cause) =>
            cause instanceof GpuNoAdapter
              ? cause
              : new GpuNoAdapter({ tried: ["requestDevice"], hint: cause instanceof Error ? cause.message : String(cause) })
        }),
        (gpu) => Effect.sync(() => gpu.close())
      )
    )
}

/** One line naming the adapter, for logs and reports. */
export const adapterName = (gpu: GpuHandle): string => describeAdapter(gpu.adapter)
