/**
 * The matrix-unit matmul's arithmetic and its guards. Its kernels need
 * chromium-experimental-subgroup-matrix, which no software adapter has, so the
 * GPU entry checks them on the device (in processes of their own); here:
 * - the split of f32 rows into f16 halves (splitF32.ts), emulated exactly on
 *   the CPU as the kernel computes it, against the float64 product;
 * - its WGSL twins on lavapipe (shader-f16) against the TypeScript ones;
 * - every probe's kernel on lavapipe with the matrix builtins emulated in
 *   plain WGSL (EMULATED_MATRICES), against the float64 product: the
 *   offsets, strides, staging, split and epilogue the device will run;
 * - the shapes a spec refuses, and a probe on a device without the feature.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GpuHandle, openGpu } from "../src/gpu/device.ts"
import { createComputePipeline, createStorageBuffer, readBuffer, uploadBuffer } from "../src/gpu/resources.ts"
import { roundWeights } from "../src/model/weightType.ts"
import { subgroupMatrixShapeProblem, type SubgroupMatrixSpec } from "../src/subgroupMatrix/matmulSubgroupMatrix.wgsl.ts"
import { EMULATED_MATRICES, type MatrixOps, matrixSetup } from "../src/subgroupMatrix/matrixOps.ts"
import { checkAttentionMatrixKernel } from "../src/subgroupMatrix/attentionProbe.ts"
import { attentionMatrixProblem } from "../src/subgroupMatrix/attentionSubgroupMatrix.wgsl.ts"
import {
  checkSubgroupMatrixKernel, type MatmulProbe, PROBE_SHAPES, runSubgroupMatrixProbe, SUBGROUP_MATRIX_PROBES, SUBGROUP_MATRIX_TOLERANCE
} from "../src/subgroupMatrix/probes.ts"
import { roundTo11Bits, rowScaleExponent, SPLIT_F32_WGSL, splitF32 } from "../src/subgroupMatrix/splitF32.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

/** f32 values of every magnitude an activation row may hold, zeros and f32 subnormals included. */
const f32Value = fc.oneof(
  fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) }),
  fc.float({ noNaN: true, min: Math.fround(-1e-30), max: Math.fround(1e-30) }),
  fc.constantFrom(0, -0, 1, -65504, 2 ** -140)
)

describe("f32 rows as f16 halves", () => {
  it("scales every row's largest magnitude into [2¹⁴, 2¹⁵) by an exact power of two", () => {
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: 2 ** -100, max: 2 ** 100 }), (max) => {
      const e = rowScaleExponent(Math.abs(max))
      const scaled = Math.abs(max) * 2 ** e
      expect(scaled).toBeGreaterThanOrEqual(2 ** 14)
      expect(scaled).toBeLessThan(2 ** 15)
    }))
    expect([rowScaleExponent(0), rowScaleExponent(NaN), rowScaleExponent(Infinity)]).toEqual([0, 0, 0])
  })

  /** The halves a device may give instead (WGSL's latitude): lo rounded toward zero, f16 subnormals flushed. */
  const deviceHalves = (v: number): readonly [number, number] => {
    const flush = (h: number) => (Math.abs(h) < 2 ** -14 ? 0 : h)
    const hi = roundTo11Bits(Math.fround(v))
    const rest = Math.fround(v - hi)
    const [nearest] = splitF32(rest)
    const lo = Math.abs(nearest) > Math.abs(rest) ? nearest - Math.sign(rest) * 2 ** (Math.floor(Math.log2(Math.abs(nearest))) - 10) : nearest
    return [flush(splitF32(hi)[0]), flush(lo)]
  }

  it.each([["lo rounded to nearest even", splitF32], ["lo rounded toward zero, subnormals flushed", deviceHalves]] as const)(
    "give the float64 product within 2⁻²¹ of Σ|x·w| per row, as the kernel computes it (halves %s, times f16 weights, unscaled after)", (_, split) => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 24 }).chain((n) => fc.tuple(
        fc.array(f32Value, { minLength: n, maxLength: n }),
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: -4, max: 4 }), { minLength: n, maxLength: n })
      )),
      ([xs, ws]) => {
        const x = Float32Array.from(xs)
        const w = roundWeights("f16", ws)
        const e = rowScaleExponent(x.reduce((m, v) => Math.max(m, Math.abs(v)), 0))
        let halves = 0
        let exact = 0
        let magnitude = 0
        let largestW = 0
        for (let i = 0; i < x.length; i++) {
          const [hi, lo] = split(x[i]! * 2 ** e)
          // each product of two f16 values is exact in f32 (22 significant bits)
          expect(Math.fround(hi * w[i]!)).toBe(hi * w[i]!)
          halves += hi * w[i]! + lo * w[i]!
          exact += x[i]! * w[i]!
          magnitude += Math.abs(x[i]! * w[i]!)
          largestW = Math.max(largestW, Math.abs(w[i]!))
        }
        // the halves miss 2⁻²¹ of each |x| (one f16 rounding of what hi left), and at most 2⁻¹⁴
        // (scaled) where a half falls below f16's normal range
        const bound = 2 ** -21 * magnitude + x.length * 2 ** (-14 - e) * largestW
        expect(Math.abs(halves * 2 ** -e - exact)).toBeLessThanOrEqual(bound)
      }
    ), { numRuns: 500 })
  })
})

describe("subgroup-matrix specs", () => {
  const spec: SubgroupMatrixSpec = {
    config: { M: 16, N: 16, K: 16 }, subgroupSize: 32, staging: "workgroup", rowMatrices: 2, colMatrices: 4, matrices: "unrolled", input: "split-f32", kSlice: 32
  }

  it("take only shapes their tiles cover exactly, and refuse the rest saying why", () => {
    expect(subgroupMatrixShapeProblem(spec, 128, 256, 256)).toBeUndefined()
    expect(subgroupMatrixShapeProblem(spec, 100, 256, 256)).toBe("rows (100) must be a multiple of the tile's 32")
    expect(subgroupMatrixShapeProblem(spec, 128, 256, 96)).toBe("outDim (96) must be a multiple of the tile's 64")
    expect(subgroupMatrixShapeProblem(spec, 128, 48, 256)).toBe("inDim (48) must be a multiple of 32")
    expect(subgroupMatrixShapeProblem({ ...spec, kSlice: 24 }, 128, 240, 256)).toBe("kSlice (24) must be a multiple of K (16)")
    expect(subgroupMatrixShapeProblem({ ...spec, staging: "global" }, 128, 256, 256)).toMatch(/split-f32 input needs workgroup staging/)
  })

  it("every matmul probe's spec takes the probes' check and timing shapes at the 16×16×16 and 16×8×16 configs, and the attention probe its own", () => {
    for (const config of [{ M: 16, N: 16, K: 16 }, { M: 16, N: 8, K: 16 }]) {
      for (const p of SUBGROUP_MATRIX_PROBES) {
        if (p.kind !== "matmul") continue
        for (const { rows, inDim, outDim } of [PROBE_SHAPES.matmul.check, PROBE_SHAPES.matmul.time]) {
          expect(subgroupMatrixShapeProblem({ ...p.spec, config, subgroupSize: 32 }, rows, inDim, outDim), p.name).toBeUndefined()
        }
      }
      const { headDim, check, time } = PROBE_SHAPES.attention
      for (const shape of [check, time]) expect(attentionMatrixProblem({ config, subgroupSize: 32, headDim }, shape)).toBeUndefined()
    }
    const spec = { config: { M: 16, N: 8, K: 16 }, subgroupSize: 32, headDim: 64 }
    expect(attentionMatrixProblem(spec, { rows: 40, keys: 32 })).toBe("rows (40) must be a multiple of M (16)")
    expect(attentionMatrixProblem(spec, { rows: 32, keys: 40 })).toBe("keys (40) must be a positive multiple of 16")
    expect(attentionMatrixProblem({ ...spec, headDim: 72 }, { rows: 32, keys: 32 })).toBe("headDim (72) must be a multiple of K (16) and N (8)")
  })
})

describe("a probe on a software adapter", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openGpu()
  })
  afterAll(() => gpu?.close())

  it("is skipped, saying the device lacks the feature, before any kernel is built", async () => {
    expect(gpu.capabilities.subgroupMatrix).toBe(false)
    expect(matrixSetup(gpu.device)).toBe("the device has no chromium-experimental-subgroup-matrix")
    for (const name of ["split-f32-2x4", "attention-split-f32"]) {
      const result = await runSubgroupMatrixProbe(gpu.device, name)
      expect(result).toMatchObject({ probe: name, status: "skipped", detail: "the device has no chromium-experimental-subgroup-matrix" })
    }
    await expect(runSubgroupMatrixProbe(gpu.device, "no-such")).rejects.toThrow(/one of global-1x1/)
  })
})

describeOnLavapipe("the split's WGSL on lavapipe (shader-f16)", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  /** f32 values a device keeps (it may flush f32 subnormals, which then weigh nothing): zeros and normal values of every magnitude. */
  const normalValue = f32Value.map((v) => (Math.abs(v) < 2 ** -126 ? 0 : v))

  it("computes the scale exponents and hi halves its TypeScript twins do, and lo halves within one f16 rounding (or a flushed subnormal)", async () => {
    const pipeline = await createComputePipeline(gpu.device, "split-f32-check", `enable f16;
${SPLIT_F32_WGSL}
@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
// the halves go through workgroup memory as in the kernel: a compiler folds differently there
var<workgroup> xh: array<f16, 64>;
var<workgroup> xl: array<f16, 64>;
var<workgroup> exponents: array<i32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(local_invocation_index) lid: u32) {
  let inside = id.x < arrayLength(&values);
  let v = select(0.0, values[min(id.x, arrayLength(&values) - 1u)], inside);
  exponents[lid] = row_scale_exponent(abs(v));
  let halves = split_f32(ldexp(v, exponents[lid]));
  xh[lid] = halves.x;
  xl[lid] = halves.y;
  workgroupBarrier();
  if (inside) { out[id.x] = vec4f(f32(exponents[lid]), f32(xh[lid]), f32(xl[lid]), 0.0); }
}`)
    await fc.assert(fc.asyncProperty(fc.array(normalValue, { minLength: 1, maxLength: 256 }), async (list) => {
      const values = Float32Array.from(list)
      const input = uploadBuffer(gpu.device, "values", values)
      const out = createStorageBuffer(gpu.device, "out", values.length * 16)
      try {
        const encoder = gpu.device.createCommandEncoder()
        const pass = encoder.beginComputePass()
        pass.setPipeline(pipeline)
        pass.setBindGroup(0, gpu.device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: input } }, { binding: 1, resource: { buffer: out } }]
        }))
        pass.dispatchWorkgroups(Math.ceil(values.length / 64))
        pass.end()
        gpu.device.queue.submit([encoder.finish()])
        const got = new Float32Array(await readBuffer(gpu.device, out, values.length * 16))
        for (let i = 0; i < values.length; i++) {
          const e = rowScaleExponent(Math.abs(values[i]!))
          const scaled = values[i]! * 2 ** e
          expect(got[4 * i], `exponent of ${values[i]}`).toBe(e)
          const [hi] = splitF32(scaled)
          // hi is exact (or a flushed f16 subnormal); lo within one f16 step of what hi left
          expect(got[4 * i + 1], `hi of ${values[i]}`).toBe(Math.abs(hi) < 2 ** -14 && got[4 * i + 1] === 0 ? 0 : hi)
          const missed = Math.abs(scaled - got[4 * i + 1]! - got[4 * i + 2]!)
          expect(missed, `halves of ${values[i]}: ${got[4 * i + 1]} + ${got[4 * i + 2]}`).toBeLessThanOrEqual(2 ** -21 * Math.abs(scaled) + 2 ** -14)
        }
      } finally {
        input.destroy()
        out.destroy()
      }
    }), { numRuns: 12 })
  })
})

describeOnLavapipe("every probe's kernel on lavapipe, the matrix builtins emulated", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  // rows and columns that every probe's tile covers at every config here, two slices deep
  const shape = { rows: 64, inDim: 64, outDim: 64 }
  // Lavapipe compiles a kernel that keeps emulated matrices across barriers slowly, the more so
  // the larger they are (a 16×16 one is 256 f32 in each invocation): the staged kernels take
  // 10–50 s each at 16×16×16. So the ladder runs at an 8×8×8 config (one some devices have;
  // offsets and strides are the config's, as on any), the device's 16×16×16 and 16×8×16 on a
  // kernel without barriers; workgroup-2x4 and split-f32-4x4 only repeat the code of
  // workgroup-2x4-arrays (staging) and split-f32-2x4 (unrolled staged steps) with other counts.
  const probe = (name: string) => SUBGROUP_MATRIX_PROBES.find((p): p is MatmulProbe => p.name === name && p.kind === "matmul")!
  const cases = [
    ...["global-1x1", "global-1x4", "workgroup-2x4-arrays", "split-f32-2x4"].map((name) => ({ probe: probe(name), config: { M: 8, N: 8, K: 8 } })),
    { probe: probe("global-1x4"), config: { M: 16, N: 16, K: 16 } },
    { probe: probe("global-1x4"), config: { M: 16, N: 8, K: 16 } }
  ]

  it.each(cases.map((c) => [`${c.probe.name} at ${c.config.M}×${c.config.N}×${c.config.K}`, c] as const))("%s matches the float64 product", async (_, { probe, config }) => {
    const spec: SubgroupMatrixSpec = { ...probe.spec, config, subgroupSize: 32 }
    const { error } = await checkSubgroupMatrixKernel(gpu.device, spec, shape, EMULATED_MATRICES)
    expect(error).toBeLessThanOrEqual(SUBGROUP_MATRIX_TOLERANCE)
  })

  // (a config with N < K, two score matrices per key tile, took lavapipe minutes to compile: the device checks that path)
  it("the attention probe's kernel at 8×8×8 matches float64's outputs and log-sum-exps", async () => {
    const spec = { config: { M: 8, N: 8, K: 8 }, subgroupSize: 32, headDim: 16 }
    const { error } = await checkAttentionMatrixKernel(gpu.device, spec, PROBE_SHAPES.attention.check, EMULATED_MATRICES)
    expect(error).toBeLessThanOrEqual(SUBGROUP_MATRIX_TOLERANCE)
  })

  it("fails the check when a matrix is read the wrong way round (the check can tell)", async () => {
    const transposed: MatrixOps = { ...EMULATED_MATRICES, load: (kind, c, target, declare, source, offset, colMajor, stride) =>
      EMULATED_MATRICES.load(kind, c, target, declare, source, offset, kind === "right" ? !colMajor : colMajor, stride) }
    const spec: SubgroupMatrixSpec = { ...probe("global-1x1").spec, config: { M: 16, N: 16, K: 16 }, subgroupSize: 32 }
    const { error } = await checkSubgroupMatrixKernel(gpu.device, spec, shape, transposed)
    expect(error).toBeGreaterThan(0.1)
  })
})
