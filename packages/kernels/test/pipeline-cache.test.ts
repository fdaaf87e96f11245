import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { ShaderCompileError } from "../src/gpu/errors.ts"
import { sharedComputePipeline } from "../src/gpu/pipelineCache.ts"
import { createStorageBuffer, readFloat32, wgsl } from "../src/gpu/resources.ts"
import { FillKernel, referenceFill } from "../src/model/fill.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const copy = (scale: number) => wgsl`
  @group(0) @binding(0) var<storage, read_write> c: array<f32>;
  @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
    if (id.x < arrayLength(&c)) { c[id.x] = c[id.x] * ${scale}.0; }
  }`

describe("the shared compiled-pipeline cache", () => {
  it("gives the same pipeline for the same label and code on a device, another for other code or another label", async () => {
    const a = await sharedComputePipeline(gpu.device, "cache-copy", copy(2))
    expect(await sharedComputePipeline(gpu.device, "cache-copy", copy(2))).toBe(a)
    expect(await sharedComputePipeline(gpu.device, "cache-copy", copy(3))).not.toBe(a)
    expect(await sharedComputePipeline(gpu.device, "cache-copy-other", copy(2))).not.toBe(a)
  })

  it("keeps each device's pipelines apart", async () => {
    const other = await openGpu()
    try {
      const here = await sharedComputePipeline(gpu.device, "cache-copy", copy(2))
      expect(await sharedComputePipeline(other.device, "cache-copy", copy(2))).not.toBe(here)
    } finally {
      other.close()
    }
  })

  it("does not keep a failed compile: each try reports the error", async () => {
    for (let i = 0; i < 2; i++) {
      const error = await sharedComputePipeline(gpu.device, "cache-broken", "fn main( {").catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ShaderCompileError)
    }
  })

  it("serves the model kernels: a second instance gets the first one's pipeline and computes with it", async () => {
    const first = await FillKernel.create(gpu.device)
    const second = await FillKernel.create(gpu.device)
    expect(second.pipeline).toBe(first.pipeline)
    const count = 300
    const spec = { seed: 4, tensorId: 2, scale: 0.5 }
    const out = createStorageBuffer(gpu.device, "cache-fill", count * 4)
    try {
      const encoder = gpu.device.createCommandEncoder()
      const params = second.encode(encoder, out, count, spec)
      gpu.device.queue.submit([encoder.finish()])
      params.destroy()
      expect(await readFloat32(gpu.device, out, count)).toEqual(referenceFill(count, spec))
    } finally {
      out.destroy()
    }
  })
})
