/**
 * 16-bit weights: rounding against an independent reference (the nearest of
 * all 65,536 values of the type, ties to the even one), the CPU packing, the
 * storage each device reads them through, and the GPU packing of synthetic
 * weights, which must give the CPU's words bit for bit.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { readUint32, uploadBuffer } from "../src/gpu/resources.ts"
import { PackWeightsKernel } from "../src/model/weightPack.ts"
import {
  bf16ToF32, packWeights, roundWeight, weightBytes, weightStorageFor, type WeightType
} from "../src/model/weightType.ts"
import { f16BitsToF32 } from "../src/attention/kvStorage.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

type Half = "f16" | "bf16"
const decode: Record<Half, (bits: number) => number> = { f16: f16BitsToF32, bf16: bf16ToF32 }

/** Every finite value of the type with its bits, ascending (−0 dropped: it ties with +0 and is checked apart). */
const table = (type: Half): ReadonlyArray<readonly [number, number]> => {
  const all: Array<readonly [number, number]> = []
  for (let bits = 0; bits < 0x10000; bits++) {
    const v = decode[type](bits)
    if (Number.isFinite(v) && !Object.is(v, -0)) all.push([v, bits])
  }
  return all.sort((a, b) => a[0] - b[0])
}
const TABLES: Record<Half, ReadonlyArray<readonly [number, number]>> = { f16: table("f16"), bf16: table("bf16") }

/** Round to nearest, ties to even bits, by search over the table; beyond the largest value, what IEEE rounding gives (∞ past the halfway point). */
const nearest = (type: Half, value: number): number => {
  const x = Math.fround(value)
  const t = TABLES[type]
  let lo = 0
  let hi = t.length - 1
  const max = t[hi]![0]
  const ulpAtMax = max - t[hi - 1]![0]
  if (Math.abs(x) >= max + ulpAtMax / 2) return Math.sign(x) * Infinity
  if (x >= max) return max
  if (x <= -max) return -max
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (t[mid]![0] <= x) lo = mid
    else hi = mid
  }
  const [a, aBits] = t[lo]!
  const [b] = t[hi]!
  const picked = x - a < b - x ? a : x - a > b - x ? b : (aBits & 1) === 0 ? a : b
  return picked === 0 && (x < 0 || Object.is(x, -0)) ? -0 : picked
}

/** Values at the rounding's edges for both types, planted among random ones. */
const EDGES = [
  1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519.99, 65520, 1e6, -1e6, 2 ** -25, 1.5 * 2 ** -24, 3e-5,
  -0, 3.3895313892515355e38, 3.4e38, -3.4e38, 1e-40, -1e-40, 0.1, -0.7
]

const sample = (n: number, seed: number, scale: number): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return i % 7 === 3 ? EDGES[(s >>> 8) % EDGES.length]! : ((s / 2 ** 32) * 2 - 1) * scale
  })
}

describe("16-bit weight values on the CPU", () => {
  it.each(["f16", "bf16"] as const)("%s rounding is to the nearest value, ties to even, ∞ beyond the range", (type) => {
    for (const x of EDGES) expect(Object.is(roundWeight(type, x), nearest(type, x)), `${x}`).toBe(true)
    fc.assert(fc.property(fc.float({ noNaN: true }), (x) => Object.is(roundWeight(type, x), nearest(type, x))), { numRuns: 20_000 })
  })

  it.each(["f16", "bf16"] as const)("%s packs two to a word, element 2k low, an odd length padded with zero", (type) => {
    fc.assert(fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 41 }), (values) => {
      const words = packWeights(type, values) as Uint32Array
      expect(words.length).toBe(Math.ceil(values.length / 2))
      expect(words.byteLength).toBe(weightBytes(type, values.length))
      values.forEach((v, i) => {
        const bits = (words[i >> 1]! >>> (16 * (i & 1))) & 0xffff
        expect(Object.is(decode[type](bits), roundWeight(type, v))).toBe(true)
      })
      if (values.length % 2 === 1) expect(words.at(-1)! >>> 16).toBe(0)
    }))
  })

  it("f16 is read natively only where the device has shader-f16; f32 and bf16 have one storage each; odd lengths take whole words", () => {
    const storages = (shaderF16: boolean) => (["f32", "f16", "bf16"] as const).map((t) => weightStorageFor(t, { shaderF16 }))
    expect(storages(true)).toEqual(["f32", "f16-native", "bf16"])
    expect(storages(false)).toEqual(["f32", "f16-packed", "bf16"])
    expect(weightBytes("f32", 3)).toBe(12)
    expect(weightBytes("f16", 3)).toBe(8)
  })
})

describe("GPU packing of f32 values into 16-bit weights", () => {
  it.each(["f16", "bf16"] as const)("gives the CPU's %s words, for two tensors sharing a buffer at any element offset", async (type: Half) => {
    const kernel = await PackWeightsKernel.create(gpu.device, type)
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: 700 }), fc.integer(),
      async (countA, countB, seed) => {
        const a = sample(countA, seed, 4)
        const b = sample(countB, seed + 1, 3e4)
        const words = Math.max(1, Math.ceil((countA + countB) / 2))
        const src = [uploadBuffer(gpu.device, "a", a.length > 0 ? a : new Float32Array(1)), uploadBuffer(gpu.device, "b", b.length > 0 ? b : new Float32Array(1))]
        // garbage where nothing is packed: the kernel must leave only the tail's padding as it was
        const dst = uploadBuffer(gpu.device, "dst", Uint32Array.from({ length: words }, () => 0xdeadbeef))
        const encoder = gpu.device.createCommandEncoder()
        const params = [kernel.encode(encoder, src[0]!, dst, countA, 0), kernel.encode(encoder, src[1]!, dst, countB, countA)]
        gpu.device.queue.submit([encoder.finish()])
        const got = await readUint32(gpu.device, dst, words)
        const want = packWeights(type as WeightType, [...a, ...b]) as Uint32Array
        if ((countA + countB) % 2 === 1) want[want.length - 1]! |= 0xdead0000
        if (countA + countB === 0) expect(Array.from(got)).toEqual([0xdeadbeef])
        else expect(Array.from(got)).toEqual(Array.from(want))
        for (const buffer of [...src, dst, ...params]) buffer.destroy()
      }), { numRuns: 24, seed: 3 })
  })
})
