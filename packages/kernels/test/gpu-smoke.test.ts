import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeAdapter, openGpu, type GpuHandle } from "../src/gpu/device.ts"
import {
  bindBuffers, createComputePipeline, createLargeStorageBuffer, createStorageBuffer, maxStorageBytes, readFloat32, uploadBuffer, wgsl
} from "../src/gpu/resources.ts"
import { GpuBufferTooLarge, ShaderCompileError } from "../src/gpu/errors.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
  console.log(`adapter: ${describeAdapter(gpu.adapter)}`)
})
afterAll(() => gpu?.close())

describe("WebGPU smoke test", () => {
  it("runs a compute shader and returns correct numbers", async () => {
    const n = 1000
    const a = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 7)
    const b = Float32Array.from({ length: n }, (_, i) => Math.sin(i))
    const pipeline = await createComputePipeline(gpu.device, "smoke-fma", wgsl`
      @group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read> b: array<f32>;
      @group(0) @binding(2) var<storage, read_write> c: array<f32>;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
        if (id.x < arrayLength(&c)) { c[id.x] = a[id.x] * 3.0 + b[id.x]; }
      }`)
    const ba = uploadBuffer(gpu.device, "a", a)
    const bb = uploadBuffer(gpu.device, "b", b)
    const bc = createStorageBuffer(gpu.device, "c", n * 4)
    const enc = gpu.device.createCommandEncoder()
    const pass = enc.beginComputePass()
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, bindBuffers(gpu.device, pipeline, [ba, bb, bc]))
    pass.dispatchWorkgroups(Math.ceil(n / 64))
    pass.end()
    gpu.device.queue.submit([enc.finish()])
    const c = await readFloat32(gpu.device, bc, n)
    for (let i = 0; i < n; i++) expect(Math.abs(c[i]! - (a[i]! * 3 + b[i]!))).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(c[i]!)))
    for (const x of [ba, bb, bc]) x.destroy()
  })

  it("turns a WGSL error into ShaderCompileError naming the kernel", async () => {
    const error = await createComputePipeline(gpu.device, "broken-kernel", "fn main( {").catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ShaderCompileError)
    expect((error as ShaderCompileError).kernel).toBe("broken-kernel")
    expect((error as ShaderCompileError).wgslMessage.length).toBeGreaterThan(0)
  })
})

describe("buffer limits", () => {
  it("refuses a storage buffer above the binding limit, saying asked and allowed", () => {
    const allowed = maxStorageBytes(gpu.device)
    const error = (() => {
      try {
        createStorageBuffer(gpu.device, "too big", allowed + 64)
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(GpuBufferTooLarge)
    expect((error as GpuBufferTooLarge).askedBytes).toBe(allowed + 64)
    expect((error as GpuBufferTooLarge).allowedBytes).toBe(allowed)
    expect((error as GpuBufferTooLarge).message).toContain("too big")
  })

  it("refuses a large (sharded) buffer above the device's buffer size", () => {
    const allowed = gpu.device.limits.maxBufferSize
    expect(() => createLargeStorageBuffer(gpu.device, "pool", allowed + 16)).toThrow(GpuBufferTooLarge)
  })
})
