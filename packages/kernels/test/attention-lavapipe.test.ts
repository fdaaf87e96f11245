/**
 * The native-f16 KV path (array<vec4<f16>> pools, `enable f16`) needs an
 * adapter with shader-f16; SwiftShader has none (it runs the packed path, in
 * attention-gpu.test.ts), Mesa's lavapipe 25 has it. Canopy finds lavapipe
 * where scripts/lavapipe.sh put it (scripts/setup.sh runs it on a machine
 * without a GPU); without it this suite skips, saying so, except in CI.
 *
 * Lavapipe compiles a pipeline at its first dispatch, about 7 s for the f16
 * level and decode kernels (twice that under load; Mesa's disk cache, kept in
 * the driver's folder, makes later runs skip it), so one shape (head dim 128,
 * GQA 4:1) carries the random cases and every case shares its pipelines; the
 * trees are small, since lavapipe runs the kernels on the CPU too. The KV
 * append's words are checked on this second compiler as well.
 */
import fc from "fast-check"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type GpuHandle } from "../src/gpu/device.ts"
import { kvPoolData, markKvPool, roundKv } from "../src/attention/kvStorage.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createPagedDecode, createTreeAttention } from "../src/attention/treeAttention.ts"
import { readUint32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount } from "../src/model/common.ts"
import { KvAppendKernel, referenceKvAppend } from "../src/model/kv-append.ts"
import { arbitraryCase, buildCase, compareOutputs, describeMismatches, roundCaseKv, type CaseSpec } from "./attention-fixtures.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

describeOnLavapipe("f16 KV on lavapipe (shader-f16)", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  it("is lavapipe, with shader-f16 recorded in the device's capabilities", () => {
    expect(gpu.adapter.description).toMatch(/llvmpipe/)
    expect(gpu.capabilities.shaderF16).toBe(true)
  })

  const check = async (spec: CaseSpec): Promise<void> => {
    const built = roundCaseKv(buildCase(spec), "f16")
    const reference = referenceTreeAttention(built.tree)
    const options = {
      heads: spec.kvHeads * spec.group, kvHeads: spec.kvHeads, headDim: spec.headDim, blockSize: spec.blockSize,
      minChunkTokens: 32, targetWorkgroups: 64, poolShards: spec.seed % 2 === 1 ? spec.kvHeads : 1, kvDtype: "f16" as const
    }
    for (const kernels of [await createTreeAttention(gpu.device, options), await createPagedDecode(gpu.device, options)]) {
      try {
        expect(kernels.kvStorage).toBe("f16-native")
        const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
        const problems = compareOutputs(result, reference, built.tree.heads, spec.headDim, 1e-4)
        expect(problems, describeMismatches(problems)).toEqual([])
      } finally {
        kernels.destroy()
      }
    }
  }

  const bounds = {
    maxDepth: 4, maxFanOut: 8, maxNodes: 12, maxLength: 160, maxSequences: 10, maxWork: 1_000_000,
    causal: true, headDims: [128], groups: [4]
  }
  const kvHeads2 = (spec: CaseSpec): CaseSpec => ({ ...spec, kvHeads: 2 })

  it("native f16 reads (hydragen and baseline) match the float64 reference on the rounded K/V", async () => {
    await fc.assert(fc.asyncProperty(arbitraryCase(bounds).map(kvHeads2), check), { numRuns: 6 })
  })

  it("the KV append's f16 words equal the CPU packing bit for bit", async () => {
    const kernel = await KvAppendKernel.create(gpu.device, "f16")
    const [kvHeads, headDim, blockSize, numBlocks, rows] = [2, 8, 4, 3, 7]
    const rowSize = kvHeads * headDim
    const k = Float32Array.from({ length: rows * rowSize }, (_, i) => Math.sin(i * 12.9898) * 3e4 * (i % 3 === 0 ? 4 : 1e-4))
    const v = Float32Array.from(k, (x, i) => x * (i % 5) - 1)
    const slots = Uint32Array.from({ length: 2 * rows }, (_, i) => (i % 2 === 0 ? (i >> 1) % numBlocks : ((i >> 1) * 3) % blockSize))
    const pool0 = new Float32Array(numBlocks * blockSize * rowSize)
    const bufs = {
      slots: uploadBuffer(gpu.device, "slots", slots), k: uploadBuffer(gpu.device, "k", k), v: uploadBuffer(gpu.device, "v", v),
      kPool: uploadBuffer(gpu.device, "kp", kvPoolData(pool0, "f16")), vPool: uploadBuffer(gpu.device, "vp", kvPoolData(pool0, "f16"))
    }
    markKvPool(bufs.kPool, "f16")
    markKvPool(bufs.vPool, "f16")
    const count = createRowCount(gpu.device, "rows", rows)
    const bound = kernel.bind({ ...bufs, count: count.buffer, kvHeads, headDim, blockSize, numBlocks })
    const encoder = gpu.device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    bound.encode(pass, rows)
    pass.end()
    gpu.device.queue.submit([encoder.finish()])
    const words = pool0.length / 2
    const gotK = await readUint32(gpu.device, bufs.kPool, words)
    const gotV = await readUint32(gpu.device, bufs.vPool, words)
    const want = (x: Float32Array) =>
      Array.from(kvPoolData(Float32Array.from(referenceKvAppend(Float64Array.from(pool0), roundKv(x, "f16"), slots, rowSize, blockSize)), "f16"))
    expect(Array.from(gotK)).toEqual(want(k))
    expect(Array.from(gotV)).toEqual(want(v))
    bound.destroy()
    count.destroy()
    for (const b of Object.values(bufs)) b.destroy()
  })
})
