import fc from "fast-check"
import { KV_DTYPES, kvPoolData, markKvPool, roundKv, unpackF16 } from "../src/attention/kvStorage.ts"
import { shardPool } from "../src/attention/poolLayout.ts"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readFloat32, readUint32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount, type KernelVariant, relativeError } from "../src/model/common.ts"
import { GatherRowsKernel, referenceGather } from "../src/model/embedding.ts"
import { FeedTokensKernel, NO_FEED, referenceFeed } from "../src/model/feedTokens.ts"
import { FillKernel, fillScale, referenceFill } from "../src/model/fill.ts"
import { KvAppendKernel, referenceKvAppend } from "../src/model/kv-append.ts"
import { MatmulKernel, referenceMatmul } from "../src/model/matmul.ts"
import { packWeights, roundWeights, WEIGHT_TYPES, weightStorageFor } from "../src/model/weightType.ts"
import { RmsNormKernel, referenceRmsNorm } from "../src/model/rmsnorm.ts"
import { referenceRope, ropeFrequencies, type RopeScaling, type RopeSpec } from "../src/model/rope.ts"
import { InvalidRopeAppend, RopeAppendKernel, type RopeAppendShape } from "../src/model/ropeAppend.ts"
import { ROPE_SCALINGS } from "./rope-fixtures.ts"
import { referenceSwiglu, SwigluKernel } from "../src/model/swiglu.ts"

let gpu: GpuHandle
let device: GPUDevice
beforeAll(async () => {
  gpu = await openGpu()
  device = gpu.device
})
afterAll(() => gpu?.close())

const TOL = 1e-4

const floats = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return ((s / 2 ** 32) * 2 - 1) * scale
  })
}

/** Encodes `body` into one compute pass with the row count set, submits, and reads `out`. */
const run = async (rows: number, out: GPUBuffer, length: number, body: (pass: GPUComputePassEncoder, count: GPUBuffer) => void) => {
  const count = createRowCount(device, "rows", rows)
  const encoder = device.createCommandEncoder()
  const pass = encoder.beginComputePass()
  body(pass, count.buffer)
  pass.end()
  device.queue.submit([encoder.finish()])
  const result = await readFloat32(device, out, length)
  count.destroy()
  return result
}

const runs = { numRuns: 12, seed: 7 }

/** Kernels split by KernelVariant run both forms on every adapter. */
const variants: ReadonlyArray<KernelVariant> = ["gpu", "software"]

/**
 * Weights as the GPU holds them, rounded to f16 or bf16 (the reference uses the same rounded values); this
 * adapter reads f16 natively or through packed words, whichever it can (the native path on lavapipe: model-lavapipe.test.ts).
 */
const weightTypes = WEIGHT_TYPES

describe("model kernels against float64 references", () => {
  it.each(weightTypes)("gathers embedding rows (and zero rows for out-of-range tokens) from a %s table", async (weights) => {
    const kernel = await GatherRowsKernel.create(device, weights)
    expect(kernel.tableStorage).toBe(weightStorageFor(weights, gpu.capabilities))
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 1200 }), fc.integer({ min: 1, max: 300 }), fc.integer(),
      async (vocab, hidden, rows, seed) => {
        const table = roundWeights(weights, floats(vocab * hidden, seed))
        const index = Uint32Array.from({ length: rows }, (_, r) => (r * 7 + seed) % (vocab + 2) >>> 0)
        const bufs = [uploadBuffer(device, "table", packWeights(weights, table)), uploadBuffer(device, "index", index), createStorageBuffer(device, "out", rows * hidden * 4)] as const
        const got = await run(rows, bufs[2], rows * hidden, (pass, count) => {
          const b = kernel.bind({ table: bufs[0], index: bufs[1], out: bufs[2], count, hidden, tableRows: vocab })
          b.encode(pass, rows)
        })
        expect(Array.from(got)).toEqual(Array.from(referenceGather(table, hidden, index)))
        for (const b of bufs) b.destroy()
      }), runs)
  })

  it.each(variants)("RMSNorm (%s variant)", async (variant) => {
    const kernel = await RmsNormKernel.create(device, variant)
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 33 }),
      fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 750 }).map((n) => 4 * n)),
      fc.integer(), fc.constantFrom(1e-5, 1e-6),
      async (rows, dim, seed, eps) => {
        const x = floats(rows * dim, seed, 3)
        const w = floats(dim, seed + 1)
        const bx = uploadBuffer(device, "x", x)
        const bw = uploadBuffer(device, "w", w)
        const by = createStorageBuffer(device, "y", x.byteLength)
        const got = await run(rows, by, rows * dim, (pass, count) =>
          kernel.bind({ x: bx, weight: bw, y: by, count, dim, eps }).encode(pass, rows))
        expect(relativeError(got, referenceRmsNorm(x, w, dim, eps))).toBeLessThan(TOL)
        for (const b of [bx, bw, by]) b.destroy()
      }), runs)
  })

  it.each(variants.flatMap((v) => weightTypes.map((t) => [v, t] as const)))(
    "matmul Y = X·Wᵀ (+bias, +accumulate) on the decoding and the prefill path (%s variant, %s weights)", async (variant, weights) => {
    const kernel = await MatmulKernel.create(device, variant, weights)
    expect(kernel.weightStorage).toBe(weightStorageFor(weights, gpu.capabilities))
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 150 })),
      // multiples of 4 take the software variant's vec4 loads
      fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 75 }).map((n) => 4 * n)),
      fc.integer({ min: 1, max: 200 }), fc.boolean(), fc.boolean(), fc.integer(),
      async (rows, inDim, outDim, withBias, accumulate, seed) => {
        const x = floats(rows * inDim, seed)
        const w = roundWeights(weights, floats(outDim * inDim, seed + 1))
        const bias = floats(outDim, seed + 2)
        const y0 = floats(rows * outDim, seed + 3)
        const bx = uploadBuffer(device, "x", x)
        const bw = uploadBuffer(device, "w", packWeights(weights, w))
        const bb = uploadBuffer(device, "bias", bias)
        const by = uploadBuffer(device, "y", y0)
        const got = await run(rows, by, rows * outDim, (pass, count) =>
          kernel.bind({ x: bx, w: bw, y: by, count, inDim, outDim, bias: withBias ? bb : undefined, accumulate }).encode(pass, rows))
        const expected = referenceMatmul(x, w, inDim, outDim, withBias ? bias : undefined)
        if (accumulate) expected.forEach((v, i) => (expected[i] = v + y0[i]!))
        expect(relativeError(got, expected)).toBeLessThan(TOL)
        for (const b of [bx, bw, bb, by]) b.destroy()
      }), { numRuns: 16, seed: 11 })
    kernel.destroy()
  })

  const scalings = ROPE_SCALINGS

  it("RoPE scaling keeps high frequencies and divides low ones by the factor (Hugging Face's rules)", () => {
    const d = 128
    const plain = (i: number, theta: number) => theta ** (-(2 * i) / d)
    const at = (s: RopeScaling, theta: number) => ropeFrequencies({ headDim: d, theta, scaling: s })
    const linear = at({ type: "linear", factor: 4 }, 10000)
    expect(linear.inverse[5]).toBeCloseTo(plain(5, 10000) / 4, 15)
    const llama3 = at(scalings[3]!, 500000)
    expect(llama3.inverse[0]).toBe(1)
    expect(llama3.inverse[63]).toBeCloseTo(plain(63, 500000) / 8, 15)
    for (let i = 1; i < 64; i++) expect(llama3.inverse[i]!).toBeLessThan(llama3.inverse[i - 1]!)
    const yarn = at(scalings[4]!, 10000)
    expect(yarn.inverse[0]).toBe(1)
    expect(yarn.inverse[63]).toBeCloseTo(plain(63, 10000) / 4, 15)
    expect(yarn.attentionFactor).toBeCloseTo(1 + 0.1 * Math.log(4), 15)
  })

  /** One part (`heads` heads from head `first`: the q, k or v heads) of fused qkv rows, as [rows][heads][headDim]. */
  const partOf = (qkv: Float32Array, rows: number, rowHeads: number, first: number, heads: number, headDim: number): Float32Array => {
    const out = new Float32Array(rows * heads * headDim)
    for (let r = 0; r < rows; r++) {
      out.set(qkv.subarray((r * rowHeads + first) * headDim, (r * rowHeads + first + heads) * headDim), r * heads * headDim)
    }
    return out
  }

  const NO_WRITE = 0xffffffff

  it("RoPE fused with the KV append: rotated q for every row, rotated k and v into f32 / f16 pools or their shards, every scaling type, positions to 2^20", async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.constantFrom(2, 6, 8, 16, 64, 128),
      fc.constantFrom(...scalings), fc.constantFrom(10000, 500000, 1000000), fc.constantFrom(...KV_DTYPES),
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 8 }), fc.integer(),
      async (rows, kvHeads, group, headDim, scaling, theta, kvDtype, numBlocks, blockSize, seed) => {
        const heads = kvHeads * group
        const spec = { headDim, theta, scaling }
        // one shard, or one per KV head, or (4 KV heads) two of two
        const poolShards = [1, kvHeads, kvHeads % 2 === 0 ? 2 : 1][(seed >>> 0) % 3]!
        // Dynamic NTK computes its frequencies in f32 on the GPU: keep its positions where that meets the budget.
        const maxPos = scaling.type === "dynamic" ? 200 : 1 << 20
        const positions = Uint32Array.from({ length: rows }, (_, r) =>
          r === 0 ? 0 : r === 1 ? Math.min(65536, maxPos - 1) : (Math.imul(seed, r + 1) >>> 0) % maxPos)
        // distinct cells, two of them past the pool (a block, and a slot, out of range); every third row, and any
        // row beyond the cells, is NO_WRITE
        const capacity = numBlocks * blockSize
        const cells = Array.from({ length: capacity + 2 }, (_, i) => i).sort((a, b) => ((a * 31 + seed) % 97) - ((b * 31 + seed) % 97))
        const slots = new Uint32Array(2 * rows)
        for (let r = 0; r < rows; r++) {
          const cell = cells[r]
          const [block, slot] = cell === undefined || r % 3 === 2 ? [NO_WRITE, 0]
            : cell === capacity + 1 ? [0, blockSize]
            : [Math.floor(cell / blockSize), cell % blockSize]
          slots.set([block, slot], 2 * r)
        }
        const rowHeads = heads + 2 * kvHeads
        const rowSize = kvHeads * headDim
        const qkv = floats(rows * rowHeads * headDim, seed, 4)
        // the f16 rounding's edges in the v heads, which are copied (in k they would be rotated off them)
        if (kvDtype === "f16") {
          F16_EDGES.forEach((x, i) => {
            const r = i % rows
            qkv[(r * rowHeads + heads + kvHeads) * headDim + ((i * 7 + (seed >>> 0)) % rowSize)] = x
          })
        }
        const pool0 = roundKv(floats(capacity * rowSize, seed + 2), kvDtype)
        const laid = (pool: ArrayLike<number>) => shardPool(Float32Array.from(pool), kvHeads, headDim, poolShards, kvDtype)
        const stored = (pool: ArrayLike<number>) => kvPoolData(laid(pool), kvDtype)
        const bufs = {
          positions: uploadBuffer(device, "positions", positions), slots: uploadBuffer(device, "slots", slots),
          qkv: uploadBuffer(device, "qkv", qkv), q: createStorageBuffer(device, "q", rows * heads * headDim * 4),
          kPool: uploadBuffer(device, "kp", stored(pool0)), vPool: uploadBuffer(device, "vp", stored(pool0))
        }
        markKvPool(bufs.kPool, kvDtype)
        markKvPool(bufs.vPool, kvDtype)
        const kernel = await RopeAppendKernel.create(device, { heads, kvHeads, spec, blockSize, numBlocks, poolShards }, kvDtype)
        const gotQ = await run(rows, bufs.q, rows * heads * headDim, (pass, count) => kernel.bind({ ...bufs, count }).encode(pass, rows))
        const words = stored(pool0).length
        const gotK = new Uint32Array((await readFloat32(device, bufs.kPool, words)).buffer)
        const gotV = new Uint32Array((await readFloat32(device, bufs.vPool, words)).buffer)
        expect(relativeError(gotQ, referenceRope(partOf(qkv, rows, rowHeads, 0, heads, headDim), heads, positions, spec))).toBeLessThan(TOL)
        const base = Float64Array.from(pool0)
        const k = referenceRope(partOf(qkv, rows, rowHeads, heads, kvHeads, headDim), kvHeads, positions, spec)
        const v = partOf(qkv, rows, rowHeads, heads + kvHeads, kvHeads, headDim)
        const wantK = laid(referenceKvAppend(base, roundKv(k, kvDtype), slots, rowSize, blockSize))
        const wantV = laid(referenceKvAppend(base, roundKv(v, kvDtype), slots, rowSize, blockSize))
        // v is copied: its words are the packing of the rounded values, bit for bit; so are the cells nobody writes
        expect(Array.from(gotV)).toEqual(Array.from(new Uint32Array(kvPoolData(wantV, kvDtype).buffer)))
        const untouched = new Uint32Array(kvPoolData(laid(pool0), kvDtype).buffer)
        const values = (got: Uint32Array) => (kvDtype === "f32" ? new Float32Array(got.buffer) : unpackF16(got))
        const written = laid(referenceKvAppend(Float64Array.from(pool0, () => 0), Float32Array.from(k, () => 1), slots, rowSize, blockSize))
        const perWord = kvDtype === "f32" ? 1 : 2
        gotK.forEach((word, i) => {
          if (written[i * perWord] === 0) expect(word, `k word ${i}, not written`).toBe(untouched[i])
        })
        // k is rotated in f32, then rounded: within the rotation's f32 budget, or one f16 step where the two roundings part
        expect(relativeError(values(gotK), wantK)).toBeLessThan(kvDtype === "f32" ? TOL : 2 ** -9)
        for (const b of Object.values(bufs)) b.destroy()
        kernel.destroy()
      }), { numRuns: 24, seed: 5 })
  })

  it("RoPE + KV append refuses a shape it cannot run before compiling, and a pool made for the other dtype", async () => {
    const spec: RopeSpec = { headDim: 8, theta: 10000, scaling: { type: "none" } }
    const shape: RopeAppendShape = { heads: 4, kvHeads: 2, spec, blockSize: 4, numBlocks: 2 }
    const refusal = (s: RopeAppendShape) => RopeAppendKernel.create(device, s).then(() => undefined, (e: unknown) => e)
    const cases: ReadonlyArray<readonly [RopeAppendShape, RegExp]> = [
      [{ ...shape, heads: 3 }, /heads \(3\) must be a positive multiple of kvHeads \(2\)/],
      [{ ...shape, spec: { ...spec, headDim: 7 } }, /headDim \(7\) must be a positive even number/],
      [{ ...shape, poolShards: 3 }, /poolShards \(3\) must divide kvHeads \(2\)/],
      [{ ...shape, blockSize: 0 }, /blockSize \(0\)/]
    ]
    for (const [bad, problem] of cases) {
      const error = await refusal(bad)
      expect(error).toBeInstanceOf(InvalidRopeAppend)
      expect((error as Error).message).toMatch(problem)
    }
    const kernel = await RopeAppendKernel.create(device, shape, "f16")
    const buffer = (label: string) => createStorageBuffer(device, label, 1024)
    const bufs = { positions: buffer("p"), slots: buffer("s"), qkv: buffer("qkv"), q: buffer("q"), kPool: buffer("kp"), vPool: buffer("vp"), count: buffer("c") }
    markKvPool(bufs.kPool, "f32")
    expect(() => kernel.bind(bufs)).toThrow(/holds f32 values/)
    kernel.destroy()
    for (const b of Object.values(bufs)) b.destroy()
  })

  // f16: values at the rounding's edges (ties to even either way, the largest f16 and the first value past it,
  // beyond the range, subnormals and the half of the smallest one, −0), planted in the k rows of every f16 case
  const F16_EDGES = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519.99, 65520, 1e6, -1e6, 2 ** -25, 1.5 * 2 ** -24, 3e-5, -0, -(1 + 2 ** -10)]

  it.each(KV_DTYPES)("KV append writes rows at (block, slot) and skips out-of-pool entries, into one %s pool or one shard per KV head", async (kvDtype) => {
    const kernel = await KvAppendKernel.create(device, kvDtype)
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 3 }), fc.constantFrom(4, 8, 32),
      fc.integer({ min: 1, max: 20 }), fc.integer(),
      async (numBlocks, blockSize, kvHeads, headDim, rows, seed) => {
        const rowSize = kvHeads * headDim
        const capacity = numBlocks * blockSize
        const cells = Array.from({ length: capacity + 2 }, (_, i) => i).sort((a, b) => ((a * 31 + seed) % 97) - ((b * 31 + seed) % 97))
        const chosen = cells.slice(0, Math.min(rows, cells.length))
        const n = chosen.length
        const slots = Uint32Array.from(chosen.flatMap((c) => [Math.floor(c / blockSize), c % blockSize]))
        const k = floats(n * rowSize, seed, 4)
        const v = floats(n * rowSize, seed + 1, 4)
        if (kvDtype === "f16") F16_EDGES.forEach((x, i) => (k[(i * 7 + seed) % k.length] = x))
        // the pool as it starts: values it can hold, so slots nobody writes keep their exact bytes
        const pool0 = roundKv(floats(capacity * rowSize, seed + 2), kvDtype)
        const poolShards = seed % 2 === 0 ? 1 : kvHeads
        const laid = (pool: ArrayLike<number>) => shardPool(Float32Array.from(pool), kvHeads, headDim, poolShards, kvDtype)
        const stored = (pool: ArrayLike<number>) => kvPoolData(laid(pool), kvDtype)
        const bufs = {
          slots: uploadBuffer(device, "slots", slots), k: uploadBuffer(device, "k", k), v: uploadBuffer(device, "v", v),
          kPool: uploadBuffer(device, "kp", stored(pool0)), vPool: uploadBuffer(device, "vp", stored(pool0))
        }
        markKvPool(bufs.kPool, kvDtype)
        markKvPool(bufs.vPool, kvDtype)
        const words = stored(pool0).length
        const gotK = new Uint32Array((await run(n, bufs.kPool, words, (pass, count) =>
          kernel.bind({ ...bufs, count, kvHeads, headDim, blockSize, numBlocks, poolShards }).encode(pass, n))).buffer)
        const gotV = new Uint32Array((await readFloat32(device, bufs.vPool, words)).buffer)
        // the reference writes the rows as the pool holds them: f32 as is, f16 rounded to nearest even
        const base = Float64Array.from(pool0)
        const wantK = laid(referenceKvAppend(base, roundKv(k, kvDtype), slots, rowSize, blockSize))
        const wantV = laid(referenceKvAppend(base, roundKv(v, kvDtype), slots, rowSize, blockSize))
        // bit for bit: the stored words are the packing of the rounded values (NaN-free, so bits and values agree)
        expect(Array.from(gotK)).toEqual(Array.from(new Uint32Array(kvPoolData(wantK, kvDtype).buffer)))
        expect(Array.from(gotV)).toEqual(Array.from(new Uint32Array(kvPoolData(wantV, kvDtype).buffer)))
        if (kvDtype === "f16") {
          // and they read back as the f16-rounded values
          expect(Array.from(unpackF16(gotK))).toEqual(Array.from(wantK))
          expect(Array.from(unpackF16(gotV))).toEqual(Array.from(wantV))
        }
        for (const b of Object.values(bufs)) b.destroy()
      }), runs)
  })

  it("KV append refuses an odd head dim for f16 and a pool made for the other dtype", async () => {
    const kernel = await KvAppendKernel.create(device, "f16")
    const buffer = (label: string) => createStorageBuffer(device, label, 1024)
    const bufs = { slots: buffer("slots"), k: buffer("k"), v: buffer("v"), kPool: buffer("kp"), vPool: buffer("vp"), count: buffer("count") }
    const shape = { kvHeads: 1, blockSize: 4, numBlocks: 2 }
    expect(() => kernel.bind({ ...bufs, ...shape, headDim: 5 })).toThrow(/headDim \(5\) must be even/)
    markKvPool(bufs.kPool, "f32")
    expect(() => kernel.bind({ ...bufs, ...shape, headDim: 8 })).toThrow(/holds f32 values/)
    for (const b of Object.values(bufs)) b.destroy()
  })

  it("SwiGLU on a fused gate/up buffer", async () => {
    const swiglu = await SwigluKernel.create(device)
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 700 }), fc.integer(), async (rows, inter, seed) => {
      const gateUp = floats(rows * 2 * inter, seed, 12)
      const bg = uploadBuffer(device, "gu", gateUp)
      const bh = createStorageBuffer(device, "h", rows * inter * 4)
      const got = await run(rows, bh, rows * inter, (pass, count) => swiglu.bind({ gateUp: bg, h: bh, count, inter }).encode(pass, rows))
      const expected = referenceSwiglu(gateUp, rows, inter)
      expect(relativeError(got, expected)).toBeLessThan(TOL)
      for (const b of [bg, bh]) b.destroy()
    }), runs)
  })

  it("token feed copies each fed row's sampled id and leaves unfed rows (NO_FEED, or a source past the sampled ids) as written", async () => {
    const kernel = await FeedTokensKernel.create(device)
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 300 }).chain((rows) => fc.tuple(
        fc.uint32Array({ minLength: rows, maxLength: rows }),
        // whole 16-byte words, so that the bound buffer holds exactly the sampled ids and a source past them is out of range
        fc.integer({ min: 1, max: 100 }).map((n) => 4 * n).chain((sampledRows) => fc.tuple(
          fc.uint32Array({ minLength: sampledRows, maxLength: sampledRows }),
          fc.array(fc.oneof(fc.constant(NO_FEED), fc.integer({ min: 0, max: sampledRows - 1 }), fc.integer({ min: sampledRows, max: sampledRows + 3 })),
            { minLength: rows, maxLength: rows }))))),
      async ([tokens, [sampled, feedRows]]) => {
        const feed = Uint32Array.from(feedRows)
        const bufs = [uploadBuffer(device, "tokens", tokens), uploadBuffer(device, "feed", feed), uploadBuffer(device, "sampled", sampled)] as const
        const count = createRowCount(device, "rows", tokens.length)
        const encoder = device.createCommandEncoder()
        const pass = encoder.beginComputePass()
        const bound = kernel.bind({ count: count.buffer, tokens: bufs[0], feed: bufs[1], sampled: bufs[2] })
        bound.encode(pass, tokens.length)
        pass.end()
        device.queue.submit([encoder.finish()])
        const got = await readUint32(device, bufs[0], tokens.length)
        expect(Array.from(got)).toEqual(Array.from(referenceFeed(tokens, feed, sampled)))
        expect(Array.from(got)).toEqual(Array.from(tokens, (t, r) => (feed[r]! < sampled.length ? sampled[feed[r]!]! : t)))
        bound.destroy()
        count.destroy()
        for (const b of bufs) b.destroy()
      }), runs)
  })

  it("seeded fill reproduces referenceFill bit for bit and differs by tensor id", async () => {
    const kernel = await FillKernel.create(device)
    const n = 70_000
    const out = createStorageBuffer(device, "fill", n * 4)
    const spec = { seed: 42, tensorId: 3, scale: 0.05, offset: 1 }
    const encoder = device.createCommandEncoder()
    const params = kernel.encode(encoder, out, n, spec)
    device.queue.submit([encoder.finish()])
    const got = await readFloat32(device, out, n)
    const expected = referenceFill(n, spec)
    expect(Array.from(got)).toEqual(Array.from(expected))
    const half = fillScale(0.05)
    expect(Math.min(...expected)).toBeGreaterThanOrEqual(1 - half)
    expect(Math.max(...expected)).toBeLessThanOrEqual(1 + half)
    expect(Math.min(...expected)).toBeLessThan(1 - 0.9 * half)
    expect(referenceFill(8, { ...spec, tensorId: 4 })).not.toEqual(expected.slice(0, 8))
    out.destroy()
    params.destroy()
  })
})
