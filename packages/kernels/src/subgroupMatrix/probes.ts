/**
 * The subgroup-matrix constructs, one probe each, from the form known to run
 * on NVIDIA through Dawn (one subgroup, operands straight from storage) to
 * the tiled, f32-exact kernel a model would use. A driver may abort the
 * process while it builds one of them, so a caller runs each probe in a
 * process of its own (the GPU entry's `subgroup-matrix` part): the first that
 * fails names the construct the device cannot take.
 *
 * A probe builds its kernel, checks it on random inputs against the float64
 * reference (f16-representable operands for the f16 input, wide-ranged f32
 * rows for split-f32), then, only if it is right, times it.
 */
import { ShaderCompileError } from "../gpu/errors.ts"
import { createComputePipeline, createStorageBuffer, readFloat32, uniformBuffer } from "../gpu/resources.ts"
import { timeGpu } from "../gpu/timing.ts"
import { capabilitiesOf } from "../gpu/adapters.ts"
import { createRowCount, relativeError } from "../model/common.ts"
import { MATRIX_MATMUL, matrixMatmulProblem, MatmulKernel, referenceMatmul } from "../model/matmul.ts"
import { roundWeights, weightStorageFor } from "../model/weightType.ts"
import { checkMatmul, MATMUL_CHECK_ROWS } from "../tune/matmul.ts"
import { ENGINE_LEVEL_PROBE, ENGINE_LEVEL_PROBE_HEAD_DIM, ENGINE_MATRIX_PROBE, type EngineProbeName } from "../tune/matrixProbe.ts"
import { levelTileName, probeLevelTile } from "../tune/levelTile.ts"
import { fittingRowMatrices, matrixLevelProblem, matrixLevelTile } from "../attention/levelAttentionMatrix.wgsl.ts"
import { kvStorageFor } from "../attention/kvStorage.ts"
import type { AttentionMatrixSpec, AttentionProductShape } from "./attentionSubgroupMatrix.wgsl.ts"
import { checkAttentionMatrixKernel, timeAttention } from "./attentionProbe.ts"
import { randomValues, repeatedValues, writeOperand } from "./operands.ts"
import {
  subgroupMatrixCode, subgroupMatrixShapeProblem, subgroupMatrixStorageBytes, type SubgroupMatrixSpec, tileCols, tileRows
} from "./matmulSubgroupMatrix.wgsl.ts"
import { builtinMatrixUnits, DEVICE_MATRICES, type MatrixConfig, type MatrixOps, matrixSetup, type MatrixSetup } from "./matrixOps.ts"

type ProbeSpec = Omit<SubgroupMatrixSpec, "config" | "subgroupSize">

export interface MatmulProbe {
  readonly kind: "matmul"
  readonly name: string
  readonly adds: string
  readonly spec: ProbeSpec
}

export interface AttentionProbe {
  readonly kind: "attention"
  readonly name: string
  readonly adds: string
}

/**
 * The engine's own matrix matmul (model/matmulMatrix.wgsl.ts) or matrix level
 * attention (attention/levelAttentionMatrix.wgsl.ts), as the tuner would
 * build it: its outcome decides whether the tuner may (tune/matrixProbe.ts).
 */
export interface EngineProbe {
  readonly kind: "engine"
  readonly name: EngineProbeName
  readonly adds: string
}

const matmul = (name: string, adds: string, spec: ProbeSpec): MatmulProbe => ({ kind: "matmul", name, adds, spec })

/** The ladder, in order: each adds one construct to one before it. */
export const SUBGROUP_MATRIX_PROBES: ReadonlyArray<MatmulProbe | AttentionProbe | EngineProbe> = [
  matmul("global-1x1", "one result matrix per subgroup, operands loaded from storage", { staging: "global", rowMatrices: 1, colMatrices: 1, matrices: "unrolled", input: "f16", kSlice: 0 }),
  matmul("global-1x4", "four result matrices in a row (the 16×64 strip)", { staging: "global", rowMatrices: 1, colMatrices: 4, matrices: "unrolled", input: "f16", kSlice: 0 }),
  matmul("workgroup-2x4", "operands staged through workgroup memory, 2×4 result matrices", { staging: "workgroup", rowMatrices: 2, colMatrices: 4, matrices: "unrolled", input: "f16", kSlice: 32 }),
  matmul("workgroup-2x4-arrays", "matrices held in arrays indexed in loops", { staging: "workgroup", rowMatrices: 2, colMatrices: 4, matrices: "arrays", input: "f16", kSlice: 32 }),
  matmul("split-f32-2x4", "f32 rows split into f16 halves in workgroup memory (f32-level accuracy)", { staging: "workgroup", rowMatrices: 2, colMatrices: 4, matrices: "unrolled", input: "split-f32", kSlice: 32 }),
  matmul("split-f32-4x4", "a 4×4 tile of result matrices", { staging: "workgroup", rowMatrices: 4, colMatrices: 4, matrices: "unrolled", input: "split-f32", kSlice: 32 }),
  { kind: "attention", name: "attention-split-f32", adds: "the level attention's Q·Kᵀ and P·V, Q and P split, matrix ops in a helper function" },
  { kind: "engine", name: ENGINE_MATRIX_PROBE, adds: "the engine's matmul: split-f32 2×4 with its prologue, epilogue and edges, f16 weights" },
  { kind: "engine", name: ENGINE_LEVEL_PROBE, adds: "the engine's level attention: paged f16 K/V staged, masks, work items, in a whole tree attention" }
]

/** Where every probe is checked (small: a float64 reference on the CPU) and timed (the roofline's 4096³; 4,096 queries on 4,096 keys). */
export const PROBE_SHAPES = {
  matmul: { check: { rows: 128, inDim: 256, outDim: 256 }, time: { rows: 4096, inDim: 4096, outDim: 4096 } },
  attention: { headDim: 128, check: { rows: 32, keys: 48 }, time: { rows: 4096, keys: 4096 } },
  /** the engine's level attention: checked on the tuner's tree, timed on its hardware step (tune/levelTile.ts) */
  level: { heads: 8, kvHeads: 2, headDim: ENGINE_LEVEL_PROBE_HEAD_DIM, kvDtype: "f16" }
} as const

/** A product's shape: rows × inDim times (outDim × inDim)ᵀ. */
export interface ProductShape {
  readonly rows: number
  readonly inDim: number
  readonly outDim: number
}

export interface ProbeResult {
  readonly probe: string
  readonly adds: string
  /**
   * ok: right and timed; wrong: built, failed its check; refused: Dawn or the
   * driver would not build it; skipped: not tried. crashed and timed out are
   * told by the process that ran the probe in a child (the probe's own process
   * never returns them).
   */
  readonly status: "ok" | "wrong" | "refused" | "skipped" | "crashed" | "timed out"
  readonly detail?: string
  readonly config?: MatrixConfig
  /** norm-wise error of the check against float64, and the bound it must meet */
  readonly error?: number
  readonly tolerance?: number
  /** the timing: its shape, milliseconds and rate (the useful flops: 2·rows·inDim·outDim, or 4·rows·keys·D for attention) */
  readonly timed?: (ProductShape | (AttentionProductShape & { readonly headDim: number })) & { readonly ms: number; readonly tflops: number; readonly timing: string }
}

/** Rows of X for a check: f16 values, or f32 rows whose magnitudes span 2⁻²⁰…2²⁰ (the split's row scaling at work). */
const checkInput = (spec: SubgroupMatrixSpec, shape: ProductShape): Float32Array => {
  const x = randomValues(shape.rows * shape.inDim, 11)
  if (spec.input === "f16") return roundWeights("f16", x)
  for (let r = 0; r < shape.rows; r++) {
    const scale = 2 ** (((r * 7) % 41) - 20)
    for (let i = 0; i < shape.inDim; i++) x[r * shape.inDim + i]! *= scale
  }
  return x
}

/**
 * Norm-wise bound of the check: f32 accumulation of n exact products (as the
 * matmul tests bound it) plus, for split-f32, the halves' 2⁻²² of each row's
 * largest |x| over n products — far below 1e-4 at the check's sizes.
 */
export const SUBGROUP_MATRIX_TOLERANCE = 1e-4

/** Builds the probe's kernel, checks it against float64, and times it when it is right (PROBE_SHAPES). */
export const runSubgroupMatrixProbe = async (device: GPUDevice, name: string): Promise<ProbeResult> => {
  const probe = SUBGROUP_MATRIX_PROBES.find((p) => p.name === name)
  if (probe === undefined) throw new RangeError(`no subgroup-matrix probe ${name}: one of ${SUBGROUP_MATRIX_PROBES.map((p) => p.name).join(", ")}`)
  const base = { probe: name, adds: probe.adds }
  const setup = matrixSetup(device)
  if (typeof setup === "string") return { ...base, status: "skipped", detail: setup }
  switch (probe.kind) {
    case "attention":
      return runAttentionProbe(device, base, setup)
    case "engine":
      return probe.name === ENGINE_LEVEL_PROBE ? runEngineLevelProbe(device, base, setup) : runEngineProbe(device, base, setup)
    case "matmul":
      return runMatmulProbe(device, base, probe, setup)
  }
}

/** A check's outcome: wrong past the tolerance, else timed. */
const judged = async (
  base: { probe: string; adds: string; config: MatrixConfig }, error: number, time: () => Promise<NonNullable<ProbeResult["timed"]>>
): Promise<ProbeResult> => {
  const figures = { ...base, error, tolerance: SUBGROUP_MATRIX_TOLERANCE }
  if (!(error <= SUBGROUP_MATRIX_TOLERANCE)) return { ...figures, status: "wrong", detail: `norm-wise error ${error.toExponential(2)} above ${SUBGROUP_MATRIX_TOLERANCE}` }
  return { ...figures, status: "ok", timed: await time() }
}

/** Runs `check`, turning a kernel the device would not build into a refusal. */
const built = async <A>(base: { probe: string; adds: string; config: MatrixConfig }, check: () => Promise<A>): Promise<A | ProbeResult> => {
  try {
    return await check()
  } catch (e) {
    if (e instanceof ShaderCompileError) return { ...base, status: "refused", detail: e.message }
    throw e
  }
}

const runMatmulProbe = async (device: GPUDevice, named: { probe: string; adds: string }, probe: MatmulProbe, setup: MatrixSetup): Promise<ProbeResult> => {
  const { check, time } = PROBE_SHAPES.matmul
  const base = { ...named, config: setup.config }
  const spec: SubgroupMatrixSpec = { ...probe.spec, ...setup }
  const problem = [check, time].map((s) => subgroupMatrixShapeProblem(spec, s.rows, s.inDim, s.outDim)).find((p) => p !== undefined)
  if (problem !== undefined) throw new RangeError(`subgroup-matrix probe ${probe.name}: ${problem}`)
  if (subgroupMatrixStorageBytes(spec) > device.limits.maxComputeWorkgroupStorageSize) {
    return { ...base, status: "skipped", detail: `needs ${subgroupMatrixStorageBytes(spec)} bytes of workgroup memory` }
  }
  const checked = await built(base, () => checkSubgroupMatrixKernel(device, spec, check))
  if ("status" in checked) return checked
  return judged(base, checked.error, () => timeProduct(device, checked.pipeline, spec, time))
}

const runAttentionProbe = async (device: GPUDevice, named: { probe: string; adds: string }, setup: MatrixSetup): Promise<ProbeResult> => {
  const { headDim, check, time } = PROBE_SHAPES.attention
  const base = { ...named, config: setup.config }
  const spec: AttentionMatrixSpec = { ...setup, headDim }
  const checked = await built(base, () => checkAttentionMatrixKernel(device, spec, check))
  if ("status" in checked) return checked
  return judged(base, checked.error, () => timeAttention(device, checked.pipeline, spec, time))
}

const runEngineProbe = async (device: GPUDevice, named: { probe: string; adds: string }, setup: MatrixSetup): Promise<ProbeResult> => {
  const base = { ...named, config: setup.config }
  const units = builtinMatrixUnits(setup)
  const capabilities = capabilitiesOf(device)
  const problem = matrixMatmulProblem(device, weightStorageFor("f16", capabilities), units)
  if (problem !== undefined) return { ...base, status: "skipped", detail: problem }
  const kernel = await built(base, () =>
    MatmulKernel.create(device, { decode: "gemv", prefill: MATRIX_MATMUL }, "f16", capabilities, { matrixUnits: units }))
  if (!(kernel instanceof MatmulKernel)) return kernel
  try {
    const wrong = await checkMatmul(device, kernel, "f16", MATMUL_CHECK_ROWS.prefill)
    if (wrong !== undefined) return { ...base, status: "wrong", detail: wrong }
    return { ...base, status: "ok", timed: await timeEngineMatmul(device, kernel, PROBE_SHAPES.matmul.time) }
  } finally {
    kernel.destroy()
  }
}

const runEngineLevelProbe = async (device: GPUDevice, named: { probe: string; adds: string }, setup: MatrixSetup): Promise<ProbeResult> => {
  const base = { ...named, config: setup.config }
  const units = builtinMatrixUnits(setup)
  const shape = PROBE_SHAPES.level
  const kv = kvStorageFor(shape.kvDtype, capabilitiesOf(device))
  const fitting = fittingRowMatrices({ kv, units }, [shape.headDim], device.limits)
  if (fitting.length === 0) return { ...base, status: "skipped", detail: matrixLevelProblem({ headDim: shape.headDim, kv, units }, device.limits)! }
  // every tile the tuner may offer is built here; the fastest gives the figures
  let timed: ProbeResult["timed"]
  const each: Array<string> = []
  for (const rowMatrices of fitting) {
    const tile = matrixLevelTile(units, rowMatrices)
    const probed = await built(base, () => probeLevelTile(device, shape, tile, units))
    if ("status" in probed) return { ...probed, detail: `${levelTileName(tile)}: ${probed.detail ?? ""}` }
    if (probed.mismatch !== undefined || probed.step === undefined) return { ...base, status: "wrong", detail: `${levelTileName(tile)}: ${probed.mismatch ?? "not timed"}` }
    const { workload, ms, timing } = probed.step
    // the useful flops of the step's shared prompt: Q·Kᵀ and P·V for every query row on it
    const rows = workload.sequences * shape.heads
    const keys = workload.sharedTokens
    if (timed === undefined || ms < timed.ms) timed = { rows, keys, headDim: shape.headDim, ms, tflops: (4 * rows * keys * shape.headDim) / (ms * 1e9), timing }
    each.push(`${levelTileName(tile)} ${ms.toFixed(3)} ms`)
  }
  return { ...base, status: "ok", ...(timed === undefined ? {} : { timed }), detail: `the step: ${each.join(", ")}` }
}

/** The engine's matmul on `shape` (zeros: values do not change how long a product takes). */
const timeEngineMatmul = async (device: GPUDevice, kernel: MatmulKernel, shape: ProductShape) => {
  const x = createStorageBuffer(device, "engine-matmul-x", shape.rows * shape.inDim * 4)
  const w = createStorageBuffer(device, "engine-matmul-w", shape.outDim * shape.inDim * 2)
  const y = createStorageBuffer(device, "engine-matmul-y", shape.rows * shape.outDim * 4)
  const count = createRowCount(device, "engine-matmul-rows", shape.rows)
  const bound = kernel.bind({ x, w, y, count: count.buffer, inDim: shape.inDim, outDim: shape.outDim })
  try {
    const timing = await timeGpu(device, (encoder) => {
      const pass = encoder.beginComputePass({ label: "engine-matmul probe" })
      bound.encode(pass, shape.rows)
      pass.end()
    })
    return { ...shape, ms: timing.medianMs, tflops: (2 * shape.rows * shape.inDim * shape.outDim) / (timing.medianMs * 1e9), timing: timing.source }
  } finally {
    bound.destroy()
    count.destroy()
    for (const b of [x, w, y]) b.destroy()
  }
}

/**
 * Builds `spec`'s kernel written with `ops` (the device's builtins, or their
 * emulation on any shader-f16 adapter), runs it once on random inputs of
 * `shape` (checkInput) and returns it with its norm-wise error against the
 * float64 product. A kernel that does not build throws ShaderCompileError.
 */
export const checkSubgroupMatrixKernel = async (
  device: GPUDevice, spec: SubgroupMatrixSpec, shape: ProductShape, ops: MatrixOps = DEVICE_MATRICES
): Promise<{ pipeline: GPUComputePipeline; error: number }> => {
  const problem = subgroupMatrixShapeProblem(spec, shape.rows, shape.inDim, shape.outDim)
  if (problem !== undefined) throw new RangeError(`subgroup-matrix kernel: ${problem}`)
  const pipeline = await createComputePipeline(device, `subgroup-matrix-${ops.name}`, subgroupMatrixCode(spec, ops))
  const x = checkInput(spec, shape)
  const w = roundWeights("f16", randomValues(shape.outDim * shape.inDim, 12))
  const y = await runProduct(device, pipeline, spec, shape, x, w)
  return { pipeline, error: relativeError(y, referenceMatmul(x, w, shape.inDim, shape.outDim)) }
}

interface ProductBuffers {
  readonly x: GPUBuffer
  readonly w: GPUBuffer
  readonly y: GPUBuffer
  readonly params: GPUBuffer
  readonly group: GPUBindGroup
  destroy(): void
}

const productBuffers = (device: GPUDevice, pipeline: GPUComputePipeline, spec: SubgroupMatrixSpec, shape: ProductShape): ProductBuffers => {
  const xBytes = shape.rows * shape.inDim * (spec.input === "f16" ? 2 : 4)
  const x = createStorageBuffer(device, "subgroup-matrix-x", xBytes)
  const w = createStorageBuffer(device, "subgroup-matrix-w", shape.outDim * shape.inDim * 2)
  const y = createStorageBuffer(device, "subgroup-matrix-y", shape.rows * shape.outDim * 4)
  const params = uniformBuffer(device, "subgroup-matrix-params", Uint32Array.of(shape.rows, shape.inDim, shape.outDim, 0))
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [x, w, y, params].map((buffer, binding) => ({ binding, resource: { buffer } }))
  })
  return { x, w, y, params, group, destroy: () => [x, w, y, params].forEach((b) => b.destroy()) }
}

const encodeProduct = (pass: GPUComputePassEncoder, pipeline: GPUComputePipeline, b: ProductBuffers, spec: SubgroupMatrixSpec, shape: ProductShape): void => {
  pass.setPipeline(pipeline)
  pass.setBindGroup(0, b.group)
  pass.dispatchWorkgroups(shape.outDim / tileCols(spec), shape.rows / tileRows(spec))
}

const runProduct = async (
  device: GPUDevice, pipeline: GPUComputePipeline, spec: SubgroupMatrixSpec, shape: ProductShape, x: Float32Array, w: Float32Array
): Promise<Float32Array> => {
  const b = productBuffers(device, pipeline, spec, shape)
  try {
    writeOperand(device, b.x, x, spec.input === "f16")
    writeOperand(device, b.w, w, true)
    const encoder = device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    encodeProduct(pass, pipeline, b, spec, shape)
    pass.end()
    device.queue.submit([encoder.finish()])
    return await readFloat32(device, b.y, shape.rows * shape.outDim)
  } finally {
    b.destroy()
  }
}

const timeProduct = async (device: GPUDevice, pipeline: GPUComputePipeline, spec: SubgroupMatrixSpec, shape: ProductShape) => {
  const b = productBuffers(device, pipeline, spec, shape)
  try {
    writeOperand(device, b.x, repeatedValues(shape.rows * shape.inDim, 21), spec.input === "f16")
    writeOperand(device, b.w, repeatedValues(shape.outDim * shape.inDim, 22), true)
    const timing = await timeGpu(device, (encoder) => {
      const pass = encoder.beginComputePass({ label: "subgroup-matrix probe" })
      encodeProduct(pass, pipeline, b, spec, shape)
      pass.end()
    })
    return { ...shape, ms: timing.medianMs, tflops: (2 * shape.rows * shape.inDim * shape.outDim) / (timing.medianMs * 1e9), timing: timing.source }
  } finally {
    b.destroy()
  }
}
