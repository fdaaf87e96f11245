/**
 * The page's messages for a model the adapter cannot hold and for a browser
 * without WebGPU, from the typed errors the runtime raises. The model is
 * opened as the page opens it, on a Dawn device with WebGPU's default limits
 * (128 MiB per storage binding): the synthetic codellama-7b's embedding
 * alone is 500 MiB.
 */
import { GpuBufferTooLarge, GpuNoAdapter, openGpu, openWebGpu } from "@canopy/kernels"
import { PRESETS } from "@canopy/runtime"
import { describe, expect, it } from "vitest"
import { explainFailure } from "../src/failure.ts"
import { FormError } from "../src/form.ts"
import { openPageModel } from "../src/model.ts"

const MiB = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

describe("the page's failure messages", () => {
  it("says a model does not fit, naming the buffer, its size and the adapter's limit, before filling any weight", async () => {
    const gpu = await openGpu()
    const adapter = await gpu.instance.requestAdapter()
    const device = await adapter!.requestDevice()
    try {
      const refused = await openPageModel(device, { kind: "synthetic", preset: "codellama-7b", seed: 0 }).then(() => "opened", (e: unknown) => e)
      expect(refused).toBeInstanceOf(GpuBufferTooLarge)
      const failure = explainFailure(refused)
      const c = PRESETS["codellama-7b"]
      expect(failure.kind).toBe("does-not-fit")
      expect(failure.title).toBe("The model does not fit this adapter")
      expect(failure.detail).toContain(`model.embed_tokens.weight needs ${MiB(c.vocabSize * c.hiddenSize * 4)}`)
      expect(failure.detail).toContain(`allows at most ${MiB(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize))}`)
    } finally {
      device.destroy()
      gpu.close()
    }
  })

  it("says which browsers and flags give WebGPU when the page has none or gets no adapter", async () => {
    const absent = await openWebGpu(undefined).catch((e: unknown) => e)
    const noAdapter = await openWebGpu({ requestAdapter: async () => null } as unknown as GPU).catch((e: unknown) => e)
    for (const e of [absent, noAdapter]) {
      expect(e).toBeInstanceOf(GpuNoAdapter)
      const failure = explainFailure(e)
      expect(failure.kind).toBe("no-webgpu")
      for (const needed of ["Chrome", "Safari", "Firefox", "--enable-unsafe-webgpu --enable-features=Vulkan", "http://localhost"]) {
        expect(failure.detail).toContain(needed)
      }
    }
  })

  it("asks for a correction, naming the field, for input the page or the engine refuses", () => {
    const failure = explainFailure(new FormError({ field: "samples", problem: "must be from 1 to 64, got 0" }))
    expect(failure).toEqual({ kind: "input", title: "Please correct this", detail: "samples: must be from 1 to 64, got 0" })
  })
})
