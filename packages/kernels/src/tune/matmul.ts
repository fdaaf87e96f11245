/**
 * Tuning the projection matmul: each row regime on its own (decoding, rows ≤
 * GEMV_MAX_ROWS, and prefill), among MATMUL_CANDIDATES (and the matrix kernel
 * where its probe passed, defaultPrefillCandidates), the device family's
 * default first. A candidate is a MatmulKernel with that regime's kernel
 * (the other regime's default beside it); it is checked against the float64
 * reference on a small product, with bias and the fused residual add, at an
 * inDim that takes vec4 loads and one that does not, then timed on one
 * layer's projections of the model (q/k/v, o, gate/up, down) at a
 * representative row count. The timed weights and inputs are zeros: their
 * values do not change how long a product takes.
 */
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { createStorageBuffer, readFloat32, uploadBuffer } from "../gpu/resources.ts"
import { createRowCount, defaultVariant, relativeError, type RowCount } from "../model/common.ts"
import {
  defaultMatmulChoice, type DecodeMatmul, GEMV_MAX_ROWS, MATMUL_CANDIDATES, type MatmulChoice, MatmulKernel,
  MATRIX_MATMUL, matrixMatmulProblem, type PrefillMatmul, referenceMatmul
} from "../model/matmul.ts"
import { deviceMatrixUnits, type MatrixUnits } from "../subgroupMatrix/matrixOps.ts"
import { packWeights, roundWeights, weightBytes, type WeightStorage, weightStorageFor, type WeightType } from "../model/weightType.ts"
import { canopyVersion, defaultTuneCache, type TuneCache } from "./cache.ts"
import { matrixProbeStatus } from "./matrixProbe.ts"
import { type CandidateTrial, tune, type TuneCandidate, type TuneChoice, type TuneOptions } from "./tuner.ts"

export interface MatmulProjection {
  readonly inDim: number
  readonly outDim: number
}

export interface MatmulTuneShape {
  /** how the weights are held */
  readonly weights: WeightType
  /** one layer's projections, timed together */
  readonly projections: ReadonlyArray<MatmulProjection>
  /** what the kernels should assume the device can do (default: its own record) */
  readonly capabilities?: GpuCapabilities
}

export interface MatmulTuneOptions extends TuneOptions {
  /** the decoding kernels to choose among (default MATMUL_CANDIDATES.decode); the device's default goes first where it is one of them */
  readonly decodeCandidates?: ReadonlyArray<DecodeMatmul>
  /** the prefill kernels to choose among (default: defaultPrefillCandidates) */
  readonly prefillCandidates?: ReadonlyArray<PrefillMatmul>
  /** the matrix units the "matrix" kernel is written for (default: the device's own builtins) */
  readonly matrixUnits?: MatrixUnits
  /** rows of the timed decoding step (default 4) */
  readonly decodeRows?: number
  /** rows of the timed prefill chunk (default 256 on a GPU, 32 on a software adapter) */
  readonly prefillRows?: number
  /**
   * Largest dimension of a timed projection on a software adapter (default
   * 1024): a 7b model's layer takes seconds a product there, so it is timed
   * cut down, each dimension at most this.
   */
  readonly softwareMaxDim?: number
}

export interface MatmulTuning {
  readonly choice: MatmulChoice
  readonly decode: TuneChoice<DecodeMatmul>
  readonly prefill: TuneChoice<PrefillMatmul>
}

/** The model's projections of one layer (q/k/v fused, o, gate/up fused, down). */
export const layerProjections = (c: {
  readonly hiddenSize: number; readonly intermediateSize: number; readonly numHeads: number; readonly numKvHeads: number; readonly headDim: number
}): ReadonlyArray<MatmulProjection> => {
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  return [
    { inDim: c.hiddenSize, outDim: q + 2 * kv },
    { inDim: q, outDim: c.hiddenSize },
    { inDim: c.hiddenSize, outDim: 2 * c.intermediateSize },
    { inDim: c.intermediateSize, outDim: c.hiddenSize }
  ]
}

const TOLERANCE = 1e-4

/** Rows, inDims (vec4 loads and scalar ones) and outDim of the check: past a tile's edge, small enough to compute in float64 at once. */
export const MATMUL_CHECK_ROWS: Record<"decode" | "prefill", number> = { decode: GEMV_MAX_ROWS - 1, prefill: 37 }
const CHECK_IN_DIMS = [68, 66] as const
const CHECK_OUT_DIM = 41

/** Deterministic values in [-1, 1): the same check on every run. */
const values = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed * 78.233) % 1)

/** Rounded up to a power of two: the shape class of a dimension, so models of about the same size share a choice. */
const roundDim = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)))

/** Owns what it makes, destroying all of it on any path. */
const owner = () => {
  const owned: Array<{ destroy(): void }> = []
  return {
    own: <T extends { destroy(): void }>(x: T): T => {
      owned.push(x)
      return x
    },
    destroy: () => {
      for (const x of owned.splice(0).reverse()) x.destroy()
    }
  }
}

/** The timed projections' inputs, weights and outputs (zeros), shared by every candidate of both regimes. */
interface TimedBuffers {
  readonly projections: ReadonlyArray<MatmulProjection & { readonly x: GPUBuffer; readonly w: GPUBuffer; readonly y: GPUBuffer }>
  destroy(): void
}

const timedBuffers = (device: GPUDevice, weights: WeightType, projections: ReadonlyArray<MatmulProjection>, rows: number): TimedBuffers => {
  const resources = owner()
  try {
    return {
      projections: projections.map((p) => ({
        ...p,
        x: resources.own(createStorageBuffer(device, "tune matmul x", rows * p.inDim * 4)),
        w: resources.own(createStorageBuffer(device, "tune matmul w", weightBytes(weights, p.outDim * p.inDim))),
        y: resources.own(createStorageBuffer(device, "tune matmul y", rows * p.outDim * 4))
      })),
      destroy: resources.destroy
    }
  } catch (e) {
    resources.destroy()
    throw e
  }
}

/** One regime's candidate as a trial: its kernel bound to the timed projections, and the check. */
const matmulTrial = (
  device: GPUDevice, kernel: MatmulKernel, weights: WeightType, regime: "decode" | "prefill", timed: TimedBuffers, rows: number
): CandidateTrial => {
  const resources = owner()
  resources.own(kernel)
  try {
    const count = resources.own(createRowCount(device, "tune matmul rows", rows))
    const bound = timed.projections.map((p) =>
      resources.own(kernel.bind({ x: p.x, w: p.w, y: p.y, count: count.buffer, inDim: p.inDim, outDim: p.outDim })))
    return {
      check: () => checkMatmul(device, kernel, weights, MATMUL_CHECK_ROWS[regime]),
      encode: (encoder) => {
        const pass = encoder.beginComputePass({ label: "tuned matmul" })
        for (const b of bound) b.encode(pass, rows)
        pass.end()
      },
      destroy: resources.destroy
    }
  } catch (e) {
    resources.destroy()
    throw e
  }
}

/** Y = X·Wᵀ + bias added into Y, against the float64 reference on the same rounded weights; undefined when it agrees. */
/** `kernel` on `rows` rows against float64 (bias, accumulate, a vec4 and a scalar inDim, past tile edges): undefined when right, else what was wrong. */
export const checkMatmul = async (device: GPUDevice, kernel: MatmulKernel, weights: WeightType, rows: number): Promise<string | undefined> => {
  const resources = owner()
  try {
    const count: RowCount = resources.own(createRowCount(device, "tune matmul check rows", rows))
    for (const inDim of CHECK_IN_DIMS) {
      const outDim = CHECK_OUT_DIM
      const x = values(rows * inDim, inDim)
      const w = roundWeights(weights, values(outDim * inDim, inDim + 1))
      const bias = values(outDim, inDim + 2)
      const y0 = values(rows * outDim, inDim + 3)
      const y = resources.own(uploadBuffer(device, "tune matmul check y", y0))
      const bound = resources.own(kernel.bind({
        x: resources.own(uploadBuffer(device, "tune matmul check x", x)),
        w: resources.own(uploadBuffer(device, "tune matmul check w", packWeights(weights, w))),
        bias: resources.own(uploadBuffer(device, "tune matmul check bias", bias)),
        y, count: count.buffer, inDim, outDim, accumulate: true
      }))
      const encoder = device.createCommandEncoder()
      const pass = encoder.beginComputePass()
      bound.encode(pass, rows)
      pass.end()
      device.queue.submit([encoder.finish()])
      const got = await readFloat32(device, y, rows * outDim)
      const expected = referenceMatmul(x, w, inDim, outDim, bias).map((v, i) => v + y0[i]!)
      const error = relativeError(got, expected)
      if (!(error <= TOLERANCE)) return `${rows} rows, inDim ${inDim}: relative error ${error.toExponential(2)}`
    }
    return undefined
  } finally {
    resources.destroy()
  }
}

/**
 * The prefill kernels timed by default: MATMUL_CANDIDATES', and the matrix
 * kernel where it can run here and its probe passed on this adapter for this
 * version (matrixProbe.ts) — never one that no isolated process built first.
 */
export const defaultPrefillCandidates = (
  device: GPUDevice, storage: WeightStorage, cache: TuneCache | undefined, version: string, units: MatrixUnits | string = deviceMatrixUnits(device)
): ReadonlyArray<PrefillMatmul> =>
  matrixMatmulProblem(device, storage, units) === undefined && matrixProbeStatus(cache, device, version) === "ok"
    ? [...MATMUL_CANDIDATES.prefill, MATRIX_MATMUL]
    : MATMUL_CANDIDATES.prefill

/**
 * The matmul kernel of each row regime for `shape` on `device`: cached,
 * measured now, or (tuning off) the device family's default.
 */
export const tuneMatmul = async (device: GPUDevice, shape: MatmulTuneShape, options: MatmulTuneOptions = {}): Promise<MatmulTuning> => {
  const capabilities = shape.capabilities ?? capabilitiesOf(device)
  const fallback = defaultMatmulChoice(defaultVariant(device))
  const cap = capabilities.software ? (options.softwareMaxDim ?? 1024) : Infinity
  const projections = shape.projections.map((p) => ({ inDim: Math.min(p.inDim, cap), outDim: Math.min(p.outDim, cap) }))
  const rows = {
    decode: Math.min(options.decodeRows ?? 4, GEMV_MAX_ROWS),
    prefill: Math.max(options.prefillRows ?? (capabilities.software ? 32 : 256), GEMV_MAX_ROWS + 1)
  }
  const shapeClass = {
    weights: weightStorageFor(shape.weights, capabilities),
    projections: shape.projections.map((p) => `${roundDim(p.inDim)}x${roundDim(p.outDim)}`).join(" ")
  }
  // made when the first candidate is built, so a cached choice allocates nothing
  let timed: TimedBuffers | undefined
  const candidatesOf = <N extends string>(regime: "decode" | "prefill", names: ReadonlyArray<N>, choiceOf: (name: N) => MatmulChoice) =>
    [...names].sort((a, b) => Number(b === fallback[regime]) - Number(a === fallback[regime])).map((name): TuneCandidate<N> => ({
      name,
      value: name,
      build: async () => {
        const kernel = await MatmulKernel.create(device, choiceOf(name), shape.weights, capabilities, { matrixUnits: options.matrixUnits })
        try {
          timed ??= timedBuffers(device, shape.weights, projections, rows.prefill)
        } catch (e) {
          kernel.destroy()
          throw e
        }
        return matmulTrial(device, kernel, shape.weights, regime, timed, rows[regime])
      }
    }))
  try {
    const decode = await tune(device, {
      kernel: "matmul-decode",
      shape: { ...shapeClass, rows: rows.decode },
      candidates: candidatesOf("decode", options.decodeCandidates ?? MATMUL_CANDIDATES.decode, (name) => ({ ...fallback, decode: name }))
    }, options)
    const prefill = await tune(device, {
      kernel: "matmul-prefill",
      shape: { ...shapeClass, rows: roundDim(rows.prefill) },
      candidates: candidatesOf("prefill", options.prefillCandidates ?? defaultPrefillCandidates(
        device, shapeClass.weights, options.cache ?? defaultTuneCache(), options.version ?? canopyVersion(), options.matrixUnits
      ), (name) => ({ ...fallback, prefill: name }))
    }, options)
    return { choice: { decode: decode.value, prefill: prefill.value }, decode, prefill }
  } finally {
    timed?.destroy()
  }
}
