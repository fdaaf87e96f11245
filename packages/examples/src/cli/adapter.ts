/**
 * `canopy adapter`: which WebGPU adapter Canopy gets on this machine, its
 * features and limits, and a small compute check that it returns correct numbers.
 */
import { bindBuffers, createComputePipeline, createStorageBuffer, readFloat32, uploadBuffer, wgsl } from "@canopy/kernels"
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect } from "effect"
import { Command } from "effect/cli"

const checkCompute = (device: GPUDevice) =>
  Effect.promise(async () => {
    const n = 4096
    const a = Float32Array.from({ length: n }, (_, i) => i)
    const pipeline = await createComputePipeline(device, "adapter-check", wgsl`
      @group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read_write> b: array<f32>;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
        if (id.x < arrayLength(&b)) { b[id.x] = a[id.x] * a[id.x] + 1.0; }
      }`)
    const input = uploadBuffer(device, "check-in", a)
    const output = createStorageBuffer(device, "check-out", n * 4)
    const encoder = device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, bindBuffers(device, pipeline, [input, output]))
    pass.dispatchWorkgroups(n / 64)
    pass.end()
    device.queue.submit([encoder.finish()])
    const b = await readFloat32(device, output, n)
    input.destroy()
    output.destroy()
    let wrong = 0
    for (let i = 0; i < n; i++) if (b[i] !== i * i + 1) wrong++
    return wrong
  })

export const adapterCommand = Command.make("adapter", {}, () =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    yield* Console.log(`adapter:  ${adapterName(gpu)}`)
    yield* Console.log(`features: ${[...gpu.features].sort().join(", ")}`)
    const l = gpu.limits
    yield* Console.log(
      `limits:   storage binding ${l.maxStorageBufferBindingSize} B, workgroup storage ${l.maxComputeWorkgroupStorageSize} B, ` +
        `${l.maxComputeInvocationsPerWorkgroup} invocations per workgroup`
    )
    const wrong = yield* checkCompute(gpu.device)
    yield* Console.log(wrong === 0 ? "compute:  4096 values correct" : `compute:  ${wrong} of 4096 values WRONG`)
    if (wrong !== 0) return yield* Effect.fail(new Error("the adapter computed wrong numbers"))
  })
).pipe(Command.withDescription("Show the WebGPU adapter Canopy uses here and check that it computes correctly"),
  Command.provide(Gpu.layer())
)
