import { openGpu, createComputePipeline, createStorageBuffer, bindBuffers } from "@canopy/kernels"
const gpu = await openGpu(); const d = gpu.device
const p = await createComputePipeline(d, "noop", "@group(0) @binding(0) var<storage, read_write> x: array<u32>; @compute @workgroup_size(1) fn main() { x[0] = 1u; }")
const b = createStorageBuffer(d, "b", 16)
const g = bindBuffers(d, p, [b])
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
for (const mode of ["full", "dispatch-only", "two-passes-per-layer", "full", "dispatch-only"]) {
  const c0 = cpu(); const t0 = performance.now()
  const e = d.createCommandEncoder()
  if (mode === "two-passes-per-layer") {
    for (let l = 0; l < 40; l++) for (let k = 0; k < 3; k++) { const pass = e.beginComputePass(); for (let i = 0; i < 5; i++) { pass.setPipeline(p); pass.setBindGroup(0, g); pass.dispatchWorkgroups(0) } pass.end() }
  } else {
    const pass = e.beginComputePass()
    for (let i = 0; i < 600; i++) { if (mode === "full" || i === 0) { pass.setPipeline(p); pass.setBindGroup(0, g) } pass.dispatchWorkgroups(0) }
    pass.end()
  }
  const t1 = performance.now()
  d.queue.submit([e.finish()])
  const t2 = performance.now()
  console.log(mode, "encode ms", (t1 - t0).toFixed(2), "submit ms", (t2 - t1).toFixed(2), "cpu", (cpu() - c0).toFixed(2))
  await d.queue.onSubmittedWorkDone()
}
gpu.close(); process.exit(0)
