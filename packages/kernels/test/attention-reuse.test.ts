/**
 * One attention object across many plans, as the engine uses it: its plan
 * buffers grow and are rewritten in place, its bind groups are kept while the
 * buffers they bind stay. A run of random plans that grow and shrink, on
 * buffers (q, pools, outputs) that persist across the run, must give exactly
 * what a fresh object gives for each plan, and that must match the float64
 * reference. A plan prepared again on the same buffers creates nothing.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { kvPoolData } from "../src/attention/kvStorage.ts"
import { shardPool } from "../src/attention/poolLayout.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention, type AttentionResult } from "../src/attention/runAttention.ts"
import { createPagedDecode, createTreeAttention, type AttentionKernels, type TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readFloat32 } from "../src/gpu/resources.ts"
import { countingDevice, countsSince, GpuWorkCounters } from "../src/gpu/workCounters.ts"
import { arbitraryCase, buildCase, compareOutputs, describeMismatches, type BuiltCase, type CaseBounds } from "./attention-fixtures.ts"

let gpu: GpuHandle
/** the device as the reused objects see it: counting what they ask (one for the file, so pipelines compile once) */
let counted: GPUDevice
const deviceCounts = new GpuWorkCounters()
beforeAll(async () => {
  gpu = await openGpu()
  counted = countingDevice(gpu.device, deviceCounts)
})
afterAll(() => gpu?.close())

const BOUNDS: CaseBounds = {
  maxDepth: 4,
  maxFanOut: 6,
  maxNodes: 10,
  maxLength: 200,
  maxSequences: 12,
  maxWork: 1_000_000,
  causal: true,
  headDims: [8]
}

interface Shape {
  readonly kvHeads: number
  readonly group: number
  readonly headDim: number
  readonly blockSize: number
  readonly poolShards: number
  readonly method: "hydragen" | "baseline"
}

const optionsOf = (shape: Shape): TreeAttentionOptions => ({
  heads: shape.kvHeads * shape.group,
  kvHeads: shape.kvHeads,
  headDim: shape.headDim,
  blockSize: shape.blockSize,
  poolShards: shape.poolShards,
  // small chunks and targets: the tests' trees are small, chunking must still happen
  minChunkTokens: 32,
  targetWorkgroups: 64
})

const create = (device: GPUDevice, shape: Shape): Promise<AttentionKernels> =>
  shape.method === "hydragen" ? createTreeAttention(device, optionsOf(shape)) : createPagedDecode(device, optionsOf(shape))

/** q, pools and outputs sized for the largest case of a run, written anew for each case. */
class PersistentBuffers {
  readonly q: GPUBuffer
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  readonly out: GPUBuffer
  readonly lse: GPUBuffer

  constructor(private readonly device: GPUDevice, private readonly shape: Shape, cases: ReadonlyArray<BuiltCase>) {
    const heads = shape.kvHeads * shape.group
    const rows = Math.max(...cases.map((c) => c.plan.numSequences))
    const pool = Math.max(...cases.map((c) => this.poolData(c.inputs.kPool, this.tokensOf(cases)).byteLength))
    this.q = createStorageBuffer(device, "q", rows * heads * shape.headDim * 4)
    this.kPool = createStorageBuffer(device, "k pool", pool)
    this.vPool = createStorageBuffer(device, "v pool", pool)
    this.out = createStorageBuffer(device, "out", rows * heads * shape.headDim * 4)
    this.lse = createStorageBuffer(device, "lse", rows * heads * 4)
  }

  /** Token slots of the largest pool of the run: every case's pool is laid out (in shards) for that many. */
  private tokensOf(cases: ReadonlyArray<BuiltCase>): number {
    return Math.max(...cases.map((c) => c.inputs.kPool.length / (this.shape.kvHeads * this.shape.headDim)))
  }

  private poolData(values: Float32Array, tokens: number): Float32Array | Uint32Array {
    const { kvHeads, headDim, poolShards } = this.shape
    const padded = new Float32Array(tokens * kvHeads * headDim)
    padded.set(values)
    return kvPoolData(shardPool(padded, kvHeads, headDim, poolShards), "f32")
  }

  load(built: BuiltCase, cases: ReadonlyArray<BuiltCase>): void {
    const write = (buffer: GPUBuffer, data: Float32Array | Uint32Array) =>
      this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    const tokens = this.tokensOf(cases)
    write(this.q, built.inputs.q)
    write(this.kPool, this.poolData(built.inputs.kPool, tokens))
    write(this.vPool, this.poolData(built.inputs.vPool, tokens))
    write(this.out, new Float32Array(this.out.size / 4).fill(NaN))
    write(this.lse, new Float32Array(this.lse.size / 4).fill(NaN))
  }

  destroy(): void {
    for (const b of [this.q, this.kPool, this.vPool, this.out, this.lse]) b.destroy()
  }
}

/** Prepares, encodes (through the counting device's encoder), submits, reads back, releases. */
const runOn = async (device: GPUDevice, kernels: AttentionKernels, built: BuiltCase, buffers: PersistentBuffers): Promise<AttentionResult> => {
  const { heads, headDim } = kernels.config
  const rows = built.plan.numSequences
  const prepared = kernels.prepare(built.plan)
  try {
    const encoder = device.createCommandEncoder()
    kernels.encode(encoder, prepared, buffers)
    device.queue.submit([encoder.finish()])
  } finally {
    prepared.destroy()
  }
  return { out: await readFloat32(gpu.device, buffers.out, rows * heads * headDim), lse: await readFloat32(gpu.device, buffers.lse, rows * heads) }
}

const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && new Uint32Array(a.buffer, a.byteOffset, a.length).every((w, i) => w === new Uint32Array(b.buffer, b.byteOffset, b.length)[i])

const arbitraryShape = fc
  .record({
    kvHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.constantFrom(1, 4),
    blockSize: fc.constantFrom(1, 4, 16),
    sharded: fc.boolean(),
    method: fc.constantFrom("hydragen" as const, "baseline" as const)
  })
  .map((r): Shape => ({ ...r, headDim: 8, poolShards: r.sharded ? r.kvHeads : 1 }))

describe("one attention object across plans", () => {
  it("gives what fresh objects give, and the float64 reference, on runs of plans that grow and shrink", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryShape, fc.array(arbitraryCase(BOUNDS), { minLength: 3, maxLength: 6 }), async (shape, specs) => {
        const cases = specs.map((spec) => buildCase({ ...spec, kvHeads: shape.kvHeads, group: shape.group, headDim: shape.headDim, blockSize: shape.blockSize }))
        const device = counted
        const start = deviceCounts.snapshot()
        const reused = await create(device, shape)
        const buffers = new PersistentBuffers(gpu.device, shape, cases)
        try {
          for (const [i, built] of cases.entries()) {
            buffers.load(built, cases)
            const got = await runOn(device, reused, built, buffers)
            const fresh = await create(gpu.device, shape)
            const want = await runTreeAttention(gpu.device, fresh, built.plan, built.inputs).finally(() => fresh.destroy())
            const where = `${shape.method}, plan ${i + 1} of ${cases.length} (${built.plan.numSequences} sequences)`
            expect(sameBits(got.out, want.out) && sameBits(got.lse, want.lse), `${where}: the reused object differs from a fresh one`).toBe(true)
            const problems = compareOutputs(want, referenceTreeAttention(built.tree), built.tree.heads, shape.headDim, 1e-4)
            expect(problems, `${where}: ${describeMismatches(problems)}`).toEqual([])
            // what the object says it asked for is what the device saw
            expect(reused.counters.snapshot()).toEqual(countsSince(deviceCounts.snapshot(), start))
          }
          // the last plan again, on the same buffers: nothing is created
          const before = reused.counters.snapshot()
          const again = await runOn(device, reused, cases.at(-1)!, buffers)
          const step = countsSince(reused.counters.snapshot(), before)
          expect({ bindGroups: step.bindGroups, buffers: step.buffers }).toEqual({ bindGroups: 0, buffers: 0 })
          expect(again.lse.length).toBe(cases.at(-1)!.plan.numSequences * shape.kvHeads * shape.group)
        } finally {
          reused.destroy()
          buffers.destroy()
        }
      }),
      { numRuns: 12 }
    )
  })

  it("holds one prepared plan at a time, and refuses plans of another object or after release", async () => {
    const shape: Shape = { kvHeads: 1, group: 1, headDim: 8, blockSize: 4, poolShards: 1, method: "hydragen" }
    const built = buildCase({ ...shape, parents: [null, 0], lengths: [5, 3], queries: [{ node: 1 }, { node: 0 }], scoreMagnitude: 3, seed: 2 })
    const [a, b] = [await create(gpu.device, shape), await create(gpu.device, shape)]
    const buffers = new PersistentBuffers(gpu.device, shape, [built])
    try {
      const first = a.prepare(built.plan)
      expect(() => a.prepare(built.plan)).toThrow(/still in use/)
      expect(() => b.encode(gpu.device.createCommandEncoder(), first, buffers)).toThrow(/another attention object/)
      first.destroy()
      expect(() => a.encode(gpu.device.createCommandEncoder(), first, buffers)).toThrow(/destroyed/)
      a.prepare(built.plan).destroy()
    } finally {
      a.destroy()
      b.destroy()
      buffers.destroy()
    }
    expect(() => a.prepare(built.plan)).toThrow(/after destroy/)
  })
})
