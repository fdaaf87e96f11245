/**
 * The native-f16 weight path (array<f16> / array<vec4<f16>> weights, `enable
 * f16`) of the matmul and the embedding gather needs an adapter with
 * shader-f16; SwiftShader has none (it runs the packed path, in
 * model-kernels.test.ts), Mesa's lavapipe 25 has it. Canopy finds lavapipe
 * where scripts/lavapipe.sh put it; without it this suite skips, saying so,
 * except in CI (see lavapipe.ts).
 *
 * Lavapipe compiles a pipeline at its first dispatch, so each kernel is built
 * once and the random cases are few and small, covering both row regimes
 * (decoding, prefill) and both inner-dimension forms (vec4, scalar).
 */
import fc from "fast-check"
import { afterAll, beforeAll, expect, it } from "vitest"
import type { GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readFloat32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount, type KernelVariant, relativeError } from "../src/model/common.ts"
import { GatherRowsKernel, referenceGather } from "../src/model/embedding.ts"
import { MatmulKernel, referenceMatmul } from "../src/model/matmul.ts"
import { packWeights, roundWeights } from "../src/model/weightType.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

const floats = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return ((s / 2 ** 32) * 2 - 1) * scale
  })
}

describeOnLavapipe("f16 weights on lavapipe (shader-f16)", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  /** Encodes `body` into one compute pass with the row count set, submits, and reads `out`. */
  const run = async (rows: number, out: GPUBuffer, length: number, body: (pass: GPUComputePassEncoder, count: GPUBuffer) => void) => {
    const count = createRowCount(gpu.device, "rows", rows)
    const encoder = gpu.device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    body(pass, count.buffer)
    pass.end()
    gpu.device.queue.submit([encoder.finish()])
    const result = await readFloat32(gpu.device, out, length)
    count.destroy()
    return result
  }

  it("is lavapipe, with shader-f16 recorded in the device's capabilities", () => {
    expect(gpu.adapter.description).toMatch(/llvmpipe/)
    expect(gpu.capabilities.shaderF16).toBe(true)
  })

  it.each<KernelVariant>(["software", "gpu"])("matmul (%s variant) reads native f16 weights like the float64 reference on the rounded values", async (variant) => {
    const kernel = await MatmulKernel.create(gpu.device, variant, "f16")
    expect(kernel.weightStorage).toBe("f16-native")
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(3, 20), fc.constantFrom(12, 13), fc.integer({ min: 1, max: 40 }), fc.boolean(), fc.integer(),
      async (rows, inDim, outDim, accumulate, seed) => {
        const x = floats(rows * inDim, seed)
        const w = roundWeights("f16", floats(outDim * inDim, seed + 1, 3))
        const bias = floats(outDim, seed + 2)
        const y0 = floats(rows * outDim, seed + 3)
        const bufs = [uploadBuffer(gpu.device, "x", x), uploadBuffer(gpu.device, "w", packWeights("f16", w)), uploadBuffer(gpu.device, "bias", bias), uploadBuffer(gpu.device, "y", y0)] as const
        const got = await run(rows, bufs[3], rows * outDim, (pass, count) =>
          kernel.bind({ x: bufs[0], w: bufs[1], bias: bufs[2], y: bufs[3], count, inDim, outDim, accumulate }).encode(pass, rows))
        const expected = referenceMatmul(x, w, inDim, outDim, bias)
        if (accumulate) expected.forEach((v, i) => (expected[i] = v + y0[i]!))
        expect(relativeError(got, expected)).toBeLessThan(1e-4)
        for (const b of bufs) b.destroy()
      }), { numRuns: 6, seed: 13 })
    kernel.destroy()
  })

  it("the embedding gather reads a native f16 table exactly (zero rows past the vocabulary)", async () => {
    const kernel = await GatherRowsKernel.create(gpu.device, "f16")
    expect(kernel.tableStorage).toBe("f16-native")
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 77 }), fc.integer(), async (vocab, hidden, seed) => {
      const table = roundWeights("f16", floats(vocab * hidden, seed, 7e4))
      const index = Uint32Array.from({ length: 5 }, (_, r) => ((r * 7 + seed) >>> 0) % (vocab + 2))
      const bufs = [uploadBuffer(gpu.device, "table", packWeights("f16", table)), uploadBuffer(gpu.device, "index", index), createStorageBuffer(gpu.device, "out", 5 * hidden * 4)] as const
      const got = await run(5, bufs[2], 5 * hidden, (pass, count) =>
        kernel.bind({ table: bufs[0], index: bufs[1], out: bufs[2], count, hidden, tableRows: vocab }).encode(pass, 5))
      expect(Array.from(got)).toEqual(Array.from(referenceGather(table, hidden, index)))
      for (const b of bufs) b.destroy()
    }), { numRuns: 4, seed: 2 })
  })
})
