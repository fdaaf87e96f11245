/**
 * Every matmul candidate (MATMUL_CANDIDATES, both reductions of gemv-vec4)
 * against the float64 reference: referenceMatmul of the float64 RMSNorm or
 * SwiGLU of X for those inputs, with every epilogue (none, bias, accumulate,
 * both) on both row regimes of every random shape.
 *
 * SwiftShader compiles a pipeline with barriers in 3–10 s, so the weight
 * types and input kinds are crossed as a Latin square: each pair of kernels
 * meets every weight type and every input kind, and every weight type meets
 * every input kind (pair k with weight type t reads input (k + t) mod 3).
 * The weight loads and the prologue are separate code in every kernel (loadW
 * and input()), so the square covers each kernel's code paths at a third of
 * the compiles of the full cross product. gemv-vec4's workgroup tree (for
 * devices without subgroups) differs from its subgroup form only in the
 * reduction, so it gets one case: the rmsnorm input, whose reduction carries
 * the most values (the sums of squares too).
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { uploadBuffer, readFloat32 } from "../src/gpu/resources.ts"
import type { GpuCapabilities } from "../src/gpu/adapters.ts"
import { createRowCount, relativeError } from "../src/model/common.ts"
import {
  defaultMatmulChoice, fittingBlockTile, GEMV_MAX_ROWS, InvalidMatmulBinding, MATMUL_CANDIDATES, MATMUL_INPUTS,
  MATRIX_MATMUL, matrixMatmulProblem, type MatmulChoice, type MatmulInput, type MatmulInputOption, MatmulKernel, referenceMatmul
} from "../src/model/matmul.ts"
import { EMULATED_MATRICES, type MatrixUnits } from "../src/subgroupMatrix/matrixOps.ts"
import { canopyVersion, memoryTuneCache } from "../src/tune/cache.ts"
import { defaultPrefillCandidates, tuneMatmul } from "../src/tune/matmul.ts"
import { ENGINE_MATRIX_PROBE, recordMatrixProbe } from "../src/tune/matrixProbe.ts"
import { referenceRmsNorm } from "../src/model/rmsnorm.ts"
import { referenceSwiglu } from "../src/model/swiglu.ts"
import { packWeights, roundWeights, WEIGHT_TYPES, type WeightType } from "../src/model/weightType.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

const floats = (n: number, seed: number, scale = 1): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return ((s / 2 ** 32) * 2 - 1) * scale
  })
}

/**
 * Norm-wise bound max|Δ| / max|y|. An f32 sum of n products errs by at most
 * n·u·Σ|x_i·w_i| (u = 2⁻²⁴, Higham's γ_n); for uniform inputs in [−1, 1],
 * Σ|x·w| ≈ n/4 while max|y| is at least about √n/3 (a sum's spread), so the
 * bound is ≈ 0.75·n^1.5·u ≤ 8e-5 at the largest n here (148; rounding errors
 * add like a random walk, so the errors seen are ~100× smaller). The
 * prologues add a few ulp each (inverseSqrt 2 ulp, exp 3 + 2|x| ulp and the
 * division of silu 2.5 ulp, WGSL's accuracy), far below it.
 */
const TOL = 1e-4
const MAX_IN = 148
const MAX_ROWS = 40

/** The kernel pairs under test: together every decoding and every prefill candidate. */
interface KernelCase {
  readonly title: string
  readonly choice: MatmulChoice
}
const CASES: ReadonlyArray<KernelCase> = [
  { title: "gemv + tiled64", choice: { decode: "gemv", prefill: "tiled64" } },
  { title: "gemv-vec4 + blocked64", choice: { decode: "gemv-vec4", prefill: "blocked64" } },
  { title: "register + blocked128", choice: { decode: "register", prefill: "blocked128" } },
  { title: "register + register", choice: { decode: "register", prefill: "register" } }
]

const SQUARE = CASES.flatMap((c, k) => WEIGHT_TYPES.map((weights, t) => ({ ...c, weights, input: MATMUL_INPUTS[(k + t) % 3]! })))

let gpu: GpuHandle
let device: GPUDevice
beforeAll(async () => {
  gpu = await openGpu()
  device = gpu.device
})
afterAll(() => gpu?.close())

const EPS = 1e-5

/** The float64 input rows the kernel should read: X, RMSNorm(X) or SwiGLU of X's halves. */
const referenceInput = (input: MatmulInput, x: Float32Array, gamma: Float32Array, rows: number, inDim: number): ArrayLike<number> =>
  input === "rmsnorm" ? referenceRmsNorm(x, gamma, inDim, EPS) : input === "swiglu" ? referenceSwiglu(x, rows, inDim) : x

interface Shape {
  readonly decodeRows: number
  readonly prefillRows: number
  readonly inDim: number
  readonly outDim: number
  readonly seed: number
}

/** Runs `kernel` on one shape, both regimes × every epilogue, and returns the worst relative error. */
const worstError = async (gpuDevice: GPUDevice, kernel: MatmulKernel, weights: WeightType, input: MatmulInput, s: Shape): Promise<number> => {
  const xWidth = input === "swiglu" ? 2 * s.inDim : s.inDim
  // RMSNorm sees rows of any scale; SwiGLU gates reach silu's curved part
  const x = floats(MAX_ROWS * xWidth, s.seed, input === "plain" ? 1 : 3)
  const w = roundWeights(weights, floats(s.outDim * s.inDim, s.seed + 1))
  const gamma = floats(s.inDim, s.seed + 2)
  const bias = floats(s.outDim, s.seed + 3)
  const y0 = floats(MAX_ROWS * s.outDim, s.seed + 4)
  const bx = uploadBuffer(gpuDevice, "x", x)
  const bw = uploadBuffer(gpuDevice, "w", packWeights(weights, w))
  const bg = uploadBuffer(gpuDevice, "gamma", gamma)
  const bb = uploadBuffer(gpuDevice, "bias", bias)
  const by = uploadBuffer(gpuDevice, "y", y0)
  const option: MatmulInputOption = input === "rmsnorm" ? { kind: "rmsnorm", weight: bg, eps: EPS } : { kind: input }
  let worst = 0
  try {
    for (const rows of [s.decodeRows, s.prefillRows]) {
      const plain = referenceMatmul(referenceInput(input, x.subarray(0, rows * xWidth), gamma, rows, s.inDim), w, s.inDim, s.outDim)
      for (const [withBias, accumulate] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        gpuDevice.queue.writeBuffer(by, 0, y0)
        const count = createRowCount(gpuDevice, "rows", rows)
        const bound = kernel.bind({ x: bx, w: bw, y: by, count: count.buffer, inDim: s.inDim, outDim: s.outDim, bias: withBias ? bb : undefined, accumulate, input: option })
        const encoder = gpuDevice.createCommandEncoder()
        const pass = encoder.beginComputePass()
        bound.encode(pass, rows)
        pass.end()
        gpuDevice.queue.submit([encoder.finish()])
        const got = await readFloat32(gpuDevice, by, rows * s.outDim)
        bound.destroy()
        count.destroy()
        const expected = plain.map((v, i) => v + (withBias ? bias[i % s.outDim]! : 0) + (accumulate ? y0[i]! : 0))
        worst = Math.max(worst, relativeError(got, expected))
      }
    }
  } finally {
    for (const b of [bx, bw, bg, bb, by]) b.destroy()
  }
  return worst
}

const shapes = fc.record({
  decodeRows: fc.oneof(fc.constantFrom(1, GEMV_MAX_ROWS), fc.integer({ min: 1, max: GEMV_MAX_ROWS })),
  prefillRows: fc.oneof(fc.constantFrom(GEMV_MAX_ROWS + 1, MAX_ROWS), fc.integer({ min: GEMV_MAX_ROWS + 1, max: MAX_ROWS })),
  // multiples of 4 take the vec4 forms, the rest the scalar ones
  inDim: fc.oneof(fc.integer({ min: 1, max: MAX_IN }), fc.integer({ min: 1, max: MAX_IN / 4 }).map((n) => 4 * n)),
  outDim: fc.integer({ min: 1, max: 80 }),
  seed: fc.integer()
})

/** Hand-picked: both row boundaries, inner dimensions on either side of a multiple of 4, odd columns past a tile. */
const EDGE_SHAPES: Array<[Shape]> = [
  [{ decodeRows: 1, prefillRows: GEMV_MAX_ROWS + 1, inDim: 13, outDim: 7, seed: 1 }],
  [{ decodeRows: GEMV_MAX_ROWS, prefillRows: MAX_ROWS, inDim: 16, outDim: 65, seed: 2 }],
  [{ decodeRows: 3, prefillRows: 33, inDim: 1, outDim: 1, seed: 3 }]
]

describe("matmul candidates against float64 references", () => {
  const check = async (choice: MatmulChoice, weights: WeightType, input: MatmulInput, capabilities: GpuCapabilities) => {
    const kernel = await MatmulKernel.create(device, choice, weights, capabilities, { inputs: [input] })
    try {
      await fc.assert(fc.asyncProperty(shapes, async (shape) => {
        expect(await worstError(device, kernel, weights, input, shape)).toBeLessThan(TOL)
      }), { numRuns: 5, seed: 17, examples: EDGE_SHAPES })
    } finally {
      kernel.destroy()
    }
  }

  // gemv-vec4 reduces with subgroups where the adapter has them (SwiftShader does)
  it.each(SQUARE)("$title, $weights weights, $input input (none, bias, accumulate, both; decoding and prefill rows)", ({ choice, weights, input }) =>
    check(choice, weights, input, gpu.capabilities))

  it("gemv-vec4 with the workgroup tree instead of subgroups, bf16 weights, rmsnorm input", () =>
    // prefill blocked128 on bf16 and rmsnorm is the square's: its pipelines are built already
    check({ decode: "gemv-vec4", prefill: "blocked128" }, "bf16", "rmsnorm", { ...gpu.capabilities, subgroups: false }))

  it("says which kernels a binding runs, and takes the device family's choice by default", async () => {
    const kernel = await MatmulKernel.create(device)
    const choice = defaultMatmulChoice(kernel.variant)
    expect(kernel.choice).toEqual(choice)
    const [x, w, y] = [uploadBuffer(device, "x", floats(64, 1)), uploadBuffer(device, "w", floats(64, 2)), uploadBuffer(device, "y", floats(64, 3))]
    const count = createRowCount(device, "rows", 1)
    const vec4 = kernel.bind({ x, w, y, count: count.buffer, inDim: 8, outDim: 8 })
    const scalar = kernel.bind({ x, w, y, count: count.buffer, inDim: 7, outDim: 8 })
    expect(vec4.uses.decode!.candidate).toBe(choice.decode)
    expect(vec4.uses.prefill!.candidate).toBe(choice.prefill)
    // a candidate with a vec4 form takes it where inDim % 4 = 0 and says so
    expect(vec4.uses.prefill!.kernel.includes("vec4")).toBe(choice.prefill !== "tiled64")
    expect(scalar.uses.prefill!.kernel).not.toMatch(/vec4/)
    for (const b of [vec4, scalar]) b.destroy()
    for (const b of [x, w, y]) b.destroy()
    count.destroy()
    kernel.destroy()
  })

  it("refuses a binding it cannot run with a typed error, before building anything", async () => {
    const kernel = await MatmulKernel.create(device, defaultMatmulChoice("software"))
    const [x, w, y, gamma] = [1, 2, 3, 4].map((s) => uploadBuffer(device, "buffer", floats(16, s))) as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer]
    const count = createRowCount(device, "rows", 1)
    const base = { x, w, y, count: count.buffer, inDim: 4, outDim: 4 }
    const problem = (binding: Parameters<MatmulKernel["bind"]>[0]): string => {
      try {
        kernel.bind(binding).destroy()
        return "bound"
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidMatmulBinding)
        return (e as InvalidMatmulBinding).message
      }
    }
    expect(problem({ ...base, input: { kind: "rmsnorm", weight: gamma, eps: 1e-5 } })).toMatch(/created for plain/)
    expect(problem({ ...base, inDim: 0 })).toMatch(/inDim must be a positive integer/)
    expect(problem({ ...base, y: x })).toMatch(/different buffer/)
    expect(problem(base)).toBe("bound")
    await expect(MatmulKernel.create(device, "software", "f32", gpu.capabilities, { inputs: [] })).rejects.toBeInstanceOf(InvalidMatmulBinding)
    const normed = await MatmulKernel.create(device, "software", "f32", gpu.capabilities, { inputs: ["rmsnorm"] })
    expect(() => normed.bind({ ...base, inDim: 20, input: { kind: "rmsnorm", weight: gamma, eps: 1e-5 } })).toThrow(/fewer than inDim = 20/)
    expect(() => normed.bind({ ...base, input: { kind: "rmsnorm", weight: gamma, eps: -1 } })).toThrow(/eps must be finite/)
    normed.destroy()
    for (const b of [x, w, y, gamma]) b.destroy()
    count.destroy()
    kernel.destroy()
  })
})

describe("blocked GEMM tiles within the device's limits", () => {
  const limits = (storage: number, invocations: number) =>
    ({ limits: { maxComputeWorkgroupStorageSize: storage, maxComputeInvocationsPerWorkgroup: invocations, maxComputeWorkgroupSizeX: invocations } }) as unknown as GPUDevice
  const tiles = [{ bm: 128, bn: 64, tm: 8, tn: 4 }, { bm: 64, bn: 64, tm: 8, tn: 4 }, { bm: 32, bn: 32, tm: 4, tn: 4 }]

  it("takes the largest tile that fits, smaller ones where memory or invocations run short", () => {
    // 128×64: 2 slices × 8 × (132 + 68) floats = 12,800 bytes, 256 invocations; 64×64 of 8×4: 8,704 bytes, 128
    expect(fittingBlockTile(limits(16384, 256), tiles)).toEqual(tiles[0])
    expect(fittingBlockTile(limits(12799, 256), tiles)).toEqual(tiles[1])
    expect(fittingBlockTile(limits(16384, 128), tiles)).toEqual(tiles[1])
    expect(fittingBlockTile(limits(8192, 256), tiles)).toEqual(tiles[2])
  })

  it("lists the candidates of each regime, today's defaults among them", () => {
    for (const variant of ["gpu", "software"] as const) {
      const choice = defaultMatmulChoice(variant)
      expect(MATMUL_CANDIDATES.decode).toContain(choice.decode)
      expect(MATMUL_CANDIDATES.prefill).toContain(choice.prefill)
    }
  })
})

describeOnLavapipe("matmul candidates read native f16 weights on lavapipe (shader-f16)", () => {
  let lavapipe: GpuHandle
  beforeAll(async () => {
    lavapipe = await openLavapipe()
  })
  afterAll(() => lavapipe?.close())

  it("gemv-vec4 + blocked128 on f16-native weights, vec4 and scalar loads", async () => {
    const kernel = await MatmulKernel.create(lavapipe.device, { decode: "gemv-vec4", prefill: "blocked128" }, "f16")
    expect(kernel.weightStorage).toBe("f16-native")
    try {
      for (const shape of [{ decodeRows: 3, prefillRows: 20, inDim: 12, outDim: 9, seed: 5 }, { decodeRows: 8, prefillRows: 9, inDim: 13, outDim: 5, seed: 6 }]) {
        expect(await worstError(lavapipe.device, kernel, "f16", "plain", shape)).toBeLessThan(TOL)
      }
    } finally {
      kernel.destroy()
    }
  })
})

describeOnLavapipe("the matrix kernel on lavapipe, its matrix builtins emulated", () => {
  let lavapipe: GpuHandle
  beforeAll(async () => {
    lavapipe = await openLavapipe()
  })
  afterAll(() => lavapipe?.close())

  // an 8×8×8 config: lavapipe compiles the emulated matrices kept across barriers in seconds at this size
  const units: MatrixUnits = { config: { M: 8, N: 8, K: 8 }, subgroupSize: 32, ops: EMULATED_MATRICES }
  // past the 16×32 tile's rows and columns, inner dimensions short of a slice and several slices deep
  const matrixShapes: Array<[Shape]> = [
    [{ decodeRows: 1, prefillRows: GEMV_MAX_ROWS + 1, inDim: 13, outDim: 7, seed: 1 }],
    [{ decodeRows: 2, prefillRows: 33, inDim: 70, outDim: 65, seed: 2 }],
    [{ decodeRows: 3, prefillRows: MAX_ROWS, inDim: 96, outDim: 32, seed: 3 }]
  ]

  // each input kind once, both weight storages among them (the prologue and the weight loads are separate code)
  it.each(MATMUL_INPUTS.map((input, i) => ({ input, storage: i % 2 === 0 ? "f16-native" : "f16-packed", shaderF16: i % 2 === 0 })))(
    "$input input on $storage weights (none, bias, accumulate, both; prefill rows past every edge)", async ({ input, storage, shaderF16 }) => {
      const capabilities = { ...lavapipe.capabilities, shaderF16 }
      const kernel = await MatmulKernel.create(lavapipe.device, { decode: "register", prefill: MATRIX_MATMUL }, "f16", capabilities, { inputs: [input], matrixUnits: units })
      expect(kernel.weightStorage).toBe(storage)
      try {
        await fc.assert(fc.asyncProperty(shapes, async (shape) => {
          expect(await worstError(lavapipe.device, kernel, "f16", input, shape)).toBeLessThan(TOL)
        }), { numRuns: 2, seed: 23, examples: matrixShapes })
      } finally {
        kernel.destroy()
      }
    })

  it("is checked and timed by the tuner beside another candidate where its probe passed", async () => {
    const cache = memoryTuneCache()
    recordMatrixProbe(cache, lavapipe.device, { probe: ENGINE_MATRIX_PROBE, adds: "", status: "ok" })
    const shape = { weights: "f16" as const, projections: [{ inDim: 64, outDim: 96 }] }
    const tuned = await tuneMatmul(lavapipe.device, shape, {
      enabled: true, cache, matrixUnits: units, decodeCandidates: ["register"], prefillCandidates: defaultPrefillCandidates(lavapipe.device, "f16-native", cache, canopyVersion(), units).filter((n) => n === "register" || n === MATRIX_MATMUL)
    })
    expect(tuned.prefill.skipped).toEqual([])
    expect(tuned.prefill.timings.map((t) => t.name).sort()).toEqual([MATRIX_MATMUL, "register"])
  })

  it("is refused, saying why, for weights that are not f16 and on a device without matrix units", async () => {
    const matrix = { decode: "register", prefill: MATRIX_MATMUL } as const
    await expect(MatmulKernel.create(lavapipe.device, matrix, "f32", lavapipe.capabilities, { matrixUnits: units }))
      .rejects.toThrow("the matrix kernel cannot run here: the matrix kernel multiplies f16 weights, not f32 ones")
    await expect(MatmulKernel.create(lavapipe.device, matrix, "bf16", lavapipe.capabilities, { matrixUnits: units })).rejects.toBeInstanceOf(InvalidMatmulBinding)
    await expect(MatmulKernel.create(lavapipe.device, matrix, "f16")).rejects.toThrow("the device has no chromium-experimental-subgroup-matrix")
    expect(matrixMatmulProblem(lavapipe.device, "f16-native", { ...units, subgroupSize: 4096 })).toMatch(/more invocations than a workgroup may have/)
  })
})
