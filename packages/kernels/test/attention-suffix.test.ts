/**
 * Which kernel should attend the suffix level (nodes of one sequence each):
 * the level kernel (its row tiles mostly empty) or the decode kernel? Times
 * whole attention passes both ways, plus the per-sequence baseline, on the
 * same device. On a software adapter only the ratios mean anything.
 * Run with CANOPY_BENCH=1 (skipped otherwise: it takes a while).
 */
import { afterAll, beforeAll, expect, it } from "vitest"
import { describeAdapter, openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, uploadBuffer } from "../src/gpu/resources.ts"
import { createPagedDecode, createTreeAttention, type AttentionKernels } from "../src/attention/treeAttention.ts"
import { buildCase, type CaseSpec } from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const timePasses = async (kernels: AttentionKernels, spec: CaseSpec, passes: number): Promise<number> => {
  const built = buildCase(spec)
  const heads = spec.kvHeads * spec.group
  const buffers = {
    q: uploadBuffer(gpu.device, "q", built.inputs.q),
    kPool: uploadBuffer(gpu.device, "k", built.inputs.kPool),
    vPool: uploadBuffer(gpu.device, "v", built.inputs.vPool),
    out: createStorageBuffer(gpu.device, "out", spec.queries.length * heads * spec.headDim * 4),
    lse: createStorageBuffer(gpu.device, "lse", spec.queries.length * heads * 4)
  }
  const prepared = kernels.prepare(built.plan)
  const run = async (n: number) => {
    const encoder = gpu.device.createCommandEncoder()
    for (let i = 0; i < n; i++) kernels.encode(encoder, prepared, buffers)
    gpu.device.queue.submit([encoder.finish()])
    await gpu.device.queue.onSubmittedWorkDone()
  }
  await run(1)
  const start = performance.now()
  await run(passes)
  const ms = (performance.now() - start) / passes
  prepared.destroy()
  for (const b of Object.values(buffers)) b.destroy()
  return ms
}

it.runIf(process.env["CANOPY_BENCH"] === "1")("suffix level: decode kernel vs level kernel", async () => {
  const leaves = 32
  const spec: CaseSpec = {
    kvHeads: 1,
    group: 4,
    headDim: 64,
    blockSize: 16,
    parents: [null, ...Array.from({ length: leaves }, () => 0)],
    lengths: [512, ...Array.from({ length: leaves }, (_, i) => 64 + ((i * 37) % 64))],
    queries: Array.from({ length: leaves }, (_, i) => ({ node: i + 1 })),
    scoreMagnitude: 10,
    seed: 1
  }
  const shape = { heads: 4, kvHeads: 1, headDim: 64, blockSize: 16, targetWorkgroups: 64 }
  const rows: Array<[string, AttentionKernels]> = [
    ["hydragen, suffix on decode kernel", await createTreeAttention(gpu.device, { ...shape, decodeMaxEntries: 1 })],
    ["hydragen, suffix on level kernel", await createTreeAttention(gpu.device, { ...shape, decodeMaxEntries: 0 })],
    ["baseline paged decode", await createPagedDecode(gpu.device, shape)]
  ]
  const times: Array<number> = []
  for (const [, kernels] of rows) times.push(await timePasses(kernels, spec, 5))
  console.log(`adapter: ${describeAdapter(gpu.adapter)}`)
  rows.forEach(([name], i) => console.log(`${name}: ${times[i]!.toFixed(1)} ms/pass (×${(times[0]! / times[i]!).toFixed(2)} speed of the first)`))
  for (const [, kernels] of rows) kernels.destroy()
  expect(times.every((t) => t > 0)).toBe(true)
})
