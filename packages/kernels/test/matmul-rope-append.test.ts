/**
 * The q/k/v projection with RoPE and the KV append in its epilogue (the
 * matmul's rope-append output) against two independent results on random
 * shapes: the float64 chain (RMSNorm, the projection, RoPE, the append) and
 * the same kernel's plain projection followed by the rope-append kernel,
 * which it must reproduce bit for bit (the same products in the same order;
 * only where they are stored differs). On lavapipe too, for the weights read
 * as native f16 (shader-f16).
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type KvDtype, kvPoolData, markKvPool, roundKv, unpackF16 } from "../src/attention/kvStorage.ts"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readFloat32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount, relativeError } from "../src/model/common.ts"
import { referenceKvAppend } from "../src/model/kv-append.ts"
import {
  GEMV_MAX_ROWS, InvalidMatmulBinding, type MatmulChoice, type MatmulInput, MatmulKernel, referenceMatmul, ropeAppendOutputProblem
} from "../src/model/matmul.ts"
import { referenceRmsNorm } from "../src/model/rmsnorm.ts"
import { referenceRope, type RopeScaling } from "../src/model/rope.ts"
import { RopeAppendKernel } from "../src/model/ropeAppend.ts"
import { packWeights, roundWeights, type WeightType } from "../src/model/weightType.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"
import { ROPE_SCALINGS } from "./rope-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const TOL = 1e-4
const EPS = 1e-5
const NO_WRITE = 0xffffffff

const floats = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return ((s / 2 ** 32) * 2 - 1) * scale
  })
}

/** A kernel pair, the weights it reads, the input it normalizes and the pools it writes. */
interface FusedCase {
  readonly title: string
  readonly choice: MatmulChoice
  readonly weights: WeightType
  readonly input: MatmulInput
  readonly kvDtype: KvDtype
}

// register stores quads in both regimes; the blocked GEMMs in prefill, beside a gemv that has no rope-append output
const CASES: ReadonlyArray<FusedCase> = [
  { title: "register + register", choice: { decode: "register", prefill: "register" }, weights: "f32", input: "rmsnorm", kvDtype: "f32" },
  { title: "gemv + blocked64", choice: { decode: "gemv", prefill: "blocked64" }, weights: "f16", input: "rmsnorm", kvDtype: "f16" },
  { title: "register + blocked128", choice: { decode: "register", prefill: "blocked128" }, weights: "bf16", input: "plain", kvDtype: "f32" }
]

interface Shape {
  readonly rows: number
  readonly kvHeads: number
  readonly group: number
  readonly headDim: number
  readonly inDim: number
  readonly scaling: RopeScaling
  readonly withBias: boolean
  readonly numBlocks: number
  readonly blockSize: number
  readonly seed: number
}

const shapes = fc.record({
  rows: fc.integer({ min: 1, max: 24 }),
  kvHeads: fc.integer({ min: 1, max: 2 }),
  group: fc.integer({ min: 1, max: 2 }),
  headDim: fc.constantFrom(4, 8, 12, 16),
  inDim: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 10 }).map((n) => 4 * n)),
  scaling: fc.constantFrom(...ROPE_SCALINGS),
  withBias: fc.boolean(),
  numBlocks: fc.integer({ min: 1, max: 4 }),
  blockSize: fc.integer({ min: 1, max: 8 }),
  seed: fc.integer()
})

/** Distinct (block, slot) cells, one of them past the pool's slots, every third row NO_WRITE, as are rows past the cells. */
const slotsFor = (s: Shape): Uint32Array => {
  const capacity = s.numBlocks * s.blockSize
  const cells = Array.from({ length: capacity + 1 }, (_, i) => i).sort((a, b) => ((a * 31 + s.seed) % 97) - ((b * 31 + s.seed) % 97))
  const slots = new Uint32Array(2 * s.rows)
  for (let r = 0; r < s.rows; r++) {
    const cell = cells[r]
    const [block, slot] = cell === undefined || r % 3 === 2 ? [NO_WRITE, 0] : cell === capacity ? [0, s.blockSize] : [Math.floor(cell / s.blockSize), cell % s.blockSize]
    slots.set([block, slot], 2 * r)
  }
  return slots
}

/** Heads [first, first + count) of each fused q/k/v row, as [rows][count][headDim]. */
const headsOf = (qkv: ArrayLike<number>, rows: number, rowHeads: number, first: number, count: number, d: number): Float64Array => {
  const out = new Float64Array(rows * count * d)
  for (let r = 0; r < rows; r++) for (let i = 0; i < count * d; i++) out[r * count * d + i] = qkv[(r * rowHeads + first) * d + i]!
  return out
}

interface Result {
  readonly q: Float32Array
  readonly k: Uint32Array
  readonly v: Uint32Array
}

/** Runs one shape through the fused projection and through the plain one plus the rope-append kernel; each reads the same inputs. */
const runBoth = async (device: GPUDevice, kernel: MatmulKernel, c: FusedCase, s: Shape) => {
  const heads = s.kvHeads * s.group
  const rowHeads = heads + 2 * s.kvHeads
  const qkvDim = rowHeads * s.headDim
  const spec = { headDim: s.headDim, theta: 10000, scaling: s.scaling }
  const maxPos = s.scaling.type === "dynamic" ? 200 : 1 << 20
  const positions = Uint32Array.from({ length: s.rows }, (_, r) => (r === 0 ? 0 : (Math.imul(s.seed, r + 1) >>> 0) % maxPos))
  const slots = slotsFor(s)
  const x = floats(s.rows * s.inDim, s.seed, 3)
  const gamma = floats(s.inDim, s.seed + 1)
  const w = roundWeights(c.weights, floats(qkvDim * s.inDim, s.seed + 2))
  const bias = floats(qkvDim, s.seed + 3)
  const rowSize = s.kvHeads * s.headDim
  const pool0 = roundKv(floats(s.numBlocks * s.blockSize * rowSize, s.seed + 4), c.kvDtype)
  const made: Array<{ destroy(): void }> = []
  const up = (label: string, data: Float32Array | Uint32Array) => {
    const b = uploadBuffer(device, label, data)
    made.push(b)
    return b
  }
  const pool = (label: string) => {
    const b = up(label, kvPoolData(pool0, c.kvDtype))
    markKvPool(b, c.kvDtype)
    return b
  }
  const rope = await RopeAppendKernel.create(device, { heads, kvHeads: s.kvHeads, spec, blockSize: s.blockSize, numBlocks: s.numBlocks }, c.kvDtype)
  const count = createRowCount(device, "rows", s.rows)
  made.push(rope, count)
  const inputs = { x: up("x", x), w: up("w", packWeights(c.weights, w)), bias: s.withBias ? up("bias", bias) : undefined, count: count.buffer, inDim: s.inDim }
  const option = c.input === "rmsnorm" ? { kind: "rmsnorm", weight: up("gamma", gamma), eps: EPS } as const : { kind: "plain" } as const
  const rowInputs = { positions: up("positions", positions), slots: up("slots", slots) }
  const read = async (q: GPUBuffer, k: GPUBuffer, v: GPUBuffer): Promise<Result> => ({
    q: await readFloat32(device, q, s.rows * heads * s.headDim),
    k: new Uint32Array((await readFloat32(device, k, k.size / 4)).buffer),
    v: new Uint32Array((await readFloat32(device, v, v.size / 4)).buffer)
  })
  const encode = (body: (pass: GPUComputePassEncoder) => void) => {
    const encoder = device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    body(pass)
    pass.end()
    device.queue.submit([encoder.finish()])
  }
  try {
    const fusedOut = { q: createStorageBuffer(device, "q", s.rows * heads * s.headDim * 4), k: pool("k"), v: pool("v") }
    const plainOut = { q: createStorageBuffer(device, "q2", s.rows * heads * s.headDim * 4), k: pool("k2"), v: pool("v2") }
    const qkv = createStorageBuffer(device, "qkv", s.rows * qkvDim * 4)
    made.push(fusedOut.q, plainOut.q, qkv)
    const output = rope.epilogue({ ...rowInputs, kPool: fusedOut.k, vPool: fusedOut.v })
    const fused = kernel.bind({ ...inputs, input: option, y: fusedOut.q, outDim: qkvDim, output })
    const plain = kernel.bind({ ...inputs, input: option, y: qkv, outDim: qkvDim })
    const appended = rope.bind({ ...rowInputs, qkv, q: plainOut.q, kPool: plainOut.k, vPool: plainOut.v, count: count.buffer })
    made.push(fused, plain)
    const covered = fused.covers(s.rows)
    if (covered) encode((pass) => fused.encode(pass, s.rows))
    else expect(() => encode((pass) => fused.encode(pass, s.rows))).toThrow(/no kernel for/)
    encode((pass) => {
      plain.encode(pass, s.rows)
      appended.encode(pass, s.rows)
    })
    const reference = () => {
      const xin = c.input === "rmsnorm" ? referenceRmsNorm(x, gamma, s.inDim, EPS) : x
      const y = referenceMatmul(xin, w, s.inDim, qkvDim, s.withBias ? bias : undefined)
      const q = referenceRope(headsOf(y, s.rows, rowHeads, 0, heads, s.headDim), heads, positions, spec)
      const k = referenceRope(headsOf(y, s.rows, rowHeads, heads, s.kvHeads, s.headDim), s.kvHeads, positions, spec)
      const v = headsOf(y, s.rows, rowHeads, heads + s.kvHeads, s.kvHeads, s.headDim)
      const append = (rows: ArrayLike<number>) => referenceKvAppend(Float64Array.from(pool0), roundKv(rows, c.kvDtype), slots, rowSize, s.blockSize)
      return { q, k: append(k), v: append(v) }
    }
    return { covered, fused: covered ? await read(fusedOut.q, fusedOut.k, fusedOut.v) : undefined, plain: await read(plainOut.q, plainOut.k, plainOut.v), reference }
  } finally {
    for (const m of made) m.destroy()
  }
}

const values = (words: Uint32Array, dtype: KvDtype): Float32Array => (dtype === "f32" ? new Float32Array(words.buffer) : unpackF16(words))

/** The property on `device`: the fused projection against the plain one + the rope-append kernel, and the float64 chain. */
const checkCase = async (device: GPUDevice, c: FusedCase, numRuns: number) => {
  const kernel = await MatmulKernel.create(device, c.choice, c.weights, undefined, { inputs: [c.input], ropeAppend: { input: c.input, kvDtype: c.kvDtype } })
  let fusedRuns = 0
  try {
    await fc.assert(fc.asyncProperty(shapes, async (shape) => {
      const { covered, fused, plain, reference } = await runBoth(device, kernel, c, shape)
      // the decode regime of gemv has no rope-append output; every other regime here has one
      expect(covered).toBe(shape.rows > GEMV_MAX_ROWS || c.choice.decode === "register")
      if (fused === undefined) return
      fusedRuns++
      expect(Array.from(fused.q)).toEqual(Array.from(plain.q))
      expect(Array.from(fused.k)).toEqual(Array.from(plain.k))
      expect(Array.from(fused.v)).toEqual(Array.from(plain.v))
      const want = reference()
      expect(relativeError(fused.q, want.q)).toBeLessThan(TOL)
      // k is rotated in f32, then rounded: within the rotation's budget, or one f16 step where the two roundings part
      const budget = c.kvDtype === "f32" ? TOL : 2 ** -9
      expect(relativeError(values(fused.k, c.kvDtype), want.k)).toBeLessThan(budget)
      expect(relativeError(values(fused.v, c.kvDtype), want.v)).toBeLessThan(budget)
    }), {
      numRuns, seed: 23,
      examples: [[{ rows: GEMV_MAX_ROWS + 1, kvHeads: 2, group: 2, headDim: 16, inDim: 13, scaling: ROPE_SCALINGS[4]!, withBias: true, numBlocks: 2, blockSize: 4, seed: 1 }]]
    })
  } finally {
    kernel.destroy()
  }
  expect(fusedRuns).toBeGreaterThan(0)
}

describe("the q/k/v projection with RoPE and the KV append in its epilogue", () => {
  it.each(CASES)("$title, $weights weights, $input input, $kvDtype pools: the plain projection + rope-append bit for bit, and the float64 chain", (c) =>
    checkCase(gpu.device, c, 8))

  it("refuses a binding it was not built for, or one that accumulates or has the wrong width, before anything runs", async () => {
    const device = gpu.device
    const kernel = await MatmulKernel.create(device, { decode: "register", prefill: "register" }, "f32", undefined, { inputs: ["plain", "rmsnorm"], ropeAppend: { input: "rmsnorm", kvDtype: "f32" } })
    const spec = { headDim: 4, theta: 10000, scaling: { type: "none" } as const }
    const rope = await RopeAppendKernel.create(device, { heads: 1, kvHeads: 1, spec, blockSize: 2, numBlocks: 1 })
    const buf = (n: number) => createStorageBuffer(device, "b", n * 4)
    const [x, w, y, pools, rows] = [buf(16), buf(64), buf(16), buf(8), buf(4)]
    const count = createRowCount(device, "rows", 1)
    try {
      const output = rope.epilogue({ positions: rows, slots: rows, kPool: pools, vPool: pools })
      const base = { x, w, y, count: count.buffer, inDim: 4, outDim: 12, output }
      const refusal = (b: Parameters<MatmulKernel["bind"]>[0]) => {
        try {
          kernel.bind(b).destroy()
          return undefined
        } catch (e) {
          return e
        }
      }
      const plain = refusal(base)
      expect(plain).toBeInstanceOf(InvalidMatmulBinding)
      expect(String(plain)).toMatch(/created for a rmsnorm input to f32 pools/)
      const normed = { ...base, input: { kind: "rmsnorm", weight: x, eps: EPS } } as const
      expect(String(refusal({ ...normed, accumulate: true }))).toMatch(/cannot accumulate/)
      expect(String(refusal({ ...normed, outDim: 8 }))).toMatch(/q\/k\/v row of 12 columns/)
      expect(refusal(normed)).toBeUndefined()
      const sharded = await RopeAppendKernel.create(device, { heads: 2, kvHeads: 2, spec, blockSize: 2, numBlocks: 1, poolShards: 2 })
      expect(sharded.epilogueProblem).toMatch(/2 shards/)
      expect(() => sharded.epilogue({ positions: rows, slots: rows, kPool: pools, vPool: pools })).toThrow(/no epilogue/)
      sharded.destroy()
      const odd = await RopeAppendKernel.create(device, { heads: 1, kvHeads: 1, spec: { ...spec, headDim: 6 }, blockSize: 2, numBlocks: 1 })
      expect(odd.epilogueProblem).toMatch(/headDim \(6\) is not a multiple of 4/)
      odd.destroy()
      // this adapter binds enough storage buffers; a device binding 8 would be told why not
      expect(ropeAppendOutputProblem(device, "rmsnorm")).toBeUndefined()
      const small = { limits: { maxStorageBuffersPerShaderStage: 8 } } as unknown as GPUDevice
      expect(ropeAppendOutputProblem(small, "rmsnorm")).toMatch(/binds 10 storage buffers; this device binds 8/)
    } finally {
      for (const b of [x, w, y, pools, rows]) b.destroy()
      count.destroy()
      rope.destroy()
      kernel.destroy()
    }
  })
})

describeOnLavapipe("the q/k/v epilogue on lavapipe, f16 weights read natively (shader-f16)", () => {
  let lavapipe: GpuHandle
  beforeAll(async () => {
    lavapipe = await openLavapipe()
  })
  afterAll(() => lavapipe?.close())

  // register tiles: barrier-free, the quickest of the quad kernels for lavapipe to compile
  it("register + register, f16 weights, rmsnorm input, f16 pools", () =>
    checkCase(lavapipe.device, { title: "register", choice: { decode: "register", prefill: "register" }, weights: "f16", input: "rmsnorm", kvDtype: "f16" }, 4))
})
