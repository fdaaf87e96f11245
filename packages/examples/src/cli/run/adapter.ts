/**
 * What `canopy adapter` runs (the command and its help are in ../adapter.ts).
 */
import {
  bindBuffers, createComputePipeline, createStorageBuffer, type ListedAdapter, listAdapters, readFloat32, uploadBuffer, wgsl
} from "@canopy/kernels"
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect } from "effect"

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

/** The optional features Canopy's kernels use, each said to be there or not. */
const CANOPY_FEATURES = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix", "timestamp-query"]

/** Bytes in the largest binary unit that divides them: "1 GiB", "128 MiB", "32 KiB", "4294967295 B". */
const bytes = (n: number | undefined): string => {
  if (n === undefined) return "?"
  const unit = (["GiB", "MiB", "KiB"] as const).findIndex((_, i) => n >= 2 ** (30 - 10 * i) && n % 2 ** (30 - 10 * i) === 0)
  return unit < 0 ? `${n} B` : `${n / 2 ** (30 - 10 * unit)} ${["GiB", "MiB", "KiB"][unit]}`
}

/** A few lines for one adapter: its name and kind, the features Canopy uses, the limits that size its kernels. */
export const formatListedAdapter = (a: ListedAdapter): ReadonlyArray<string> => {
  const c = a.candidate
  const from = c.driver === "system" ? "the system's driver" : c.driver === "user" ? `VK_ICD_FILENAMES ${c.icd}` : `${c.driver} ICD ${c.icd}`
  const head = `${a.picked ? "*" : " "} ${c.name}  [${c.backend}, ${c.software ? "software" : "hardware"}; ${from}]`
  if (a.summary === undefined) return [head, "    (listed, but Dawn would not hand it out)"]
  const l = a.limits
  return [
    head,
    `    features: ${CANOPY_FEATURES.map((f) => `${f} ${a.features.includes(f) ? "yes" : "no"}`).join(", ")}`,
    `    limits:   storage binding ${bytes(l.maxStorageBufferBindingSize)}, buffer ${bytes(l.maxBufferSize)}, ` +
      `workgroup storage ${bytes(l.maxComputeWorkgroupStorageSize)}, ${l.maxComputeInvocationsPerWorkgroup} invocations per workgroup, ` +
      `${l.maxStorageBuffersPerShaderStage} storage buffers per stage`
  ]
}

export const run = () =>
  Effect.gen(function*() {
    const listed = yield* Effect.promise(() => listAdapters())
    yield* Console.log(`adapters found: ${listed.length} (* the one Canopy picks; CANOPY_ADAPTER=hardware, software or part of a name picks another)`)
    for (const a of listed) for (const line of formatListedAdapter(a)) yield* Console.log(line)
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
  }).pipe(Effect.provide(Gpu.layer()))
