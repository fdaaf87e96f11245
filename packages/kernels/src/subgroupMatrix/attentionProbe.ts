/**
 * The attention probe's check and timing (attentionSubgroupMatrix.wgsl.ts):
 * queries whose rows span 2⁻⁴…2⁴ in magnitude (the row scaling at work) over
 * f16 keys and values, against the float64 reference (attendSegment) for
 * every row's output and log-sum-exp.
 */
import { attendSegment } from "../attention/reference.ts"
import { createComputePipeline, createStorageBuffer, readFloat32, uniformBuffer } from "../gpu/resources.ts"
import { timeGpu } from "../gpu/timing.ts"
import { relativeError } from "../model/common.ts"
import { roundWeights } from "../model/weightType.ts"
import {
  attentionMatrixCode, attentionMatrixProblem, type AttentionMatrixSpec, type AttentionProductShape
} from "./attentionSubgroupMatrix.wgsl.ts"
import { DEVICE_MATRICES, type MatrixOps } from "./matrixOps.ts"
import { randomValues, repeatedValues, writeOperand } from "./operands.ts"

interface AttentionBuffers {
  readonly q: GPUBuffer
  readonly k: GPUBuffer
  readonly v: GPUBuffer
  readonly o: GPUBuffer
  readonly lse: GPUBuffer
  readonly group: GPUBindGroup
  destroy(): void
}

const attentionBuffers = (device: GPUDevice, pipeline: GPUComputePipeline, spec: AttentionMatrixSpec, shape: AttentionProductShape): AttentionBuffers => {
  const D = spec.headDim
  const q = createStorageBuffer(device, "attention-probe-q", shape.rows * D * 4)
  const k = createStorageBuffer(device, "attention-probe-k", shape.keys * D * 2)
  const v = createStorageBuffer(device, "attention-probe-v", shape.keys * D * 2)
  const o = createStorageBuffer(device, "attention-probe-o", shape.rows * D * 4)
  const lse = createStorageBuffer(device, "attention-probe-lse", shape.rows * 4)
  const words = Uint32Array.of(shape.rows, shape.keys, 0, 0)
  new Float32Array(words.buffer)[2] = 1 / Math.sqrt(D)
  const params = uniformBuffer(device, "attention-probe-params", words)
  const all = [q, k, v, o, lse, params]
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: all.map((buffer, binding) => ({ binding, resource: { buffer } })) })
  return { q, k, v, o, lse, group, destroy: () => all.forEach((b) => b.destroy()) }
}

const encodeAttention = (pass: GPUComputePassEncoder, pipeline: GPUComputePipeline, b: AttentionBuffers, spec: AttentionMatrixSpec, shape: AttentionProductShape): void => {
  pass.setPipeline(pipeline)
  pass.setBindGroup(0, b.group)
  pass.dispatchWorkgroups(shape.rows / spec.config.M)
}

/**
 * Builds `spec`'s kernel written with `ops`, runs it once on random inputs
 * of `shape` and returns it with its error against float64: the larger of
 * the outputs' norm-wise error and the log-sum-exps' largest difference.
 * A kernel that does not build throws ShaderCompileError.
 */
export const checkAttentionMatrixKernel = async (
  device: GPUDevice, spec: AttentionMatrixSpec, shape: AttentionProductShape, ops: MatrixOps = DEVICE_MATRICES
): Promise<{ pipeline: GPUComputePipeline; error: number }> => {
  const problem = attentionMatrixProblem(spec, shape)
  if (problem !== undefined) throw new RangeError(`subgroup-matrix attention: ${problem}`)
  const pipeline = await createComputePipeline(device, `subgroup-matrix-attention-${ops.name}`, attentionMatrixCode(spec, ops))
  const D = spec.headDim
  const q = randomValues(shape.rows * D, 31)
  for (let r = 0; r < shape.rows; r++) for (let d = 0; d < D; d++) q[r * D + d]! *= 2 ** ((r % 9) - 4)
  const k = roundWeights("f16", randomValues(shape.keys * D, 32))
  const v = roundWeights("f16", randomValues(shape.keys * D, 33))
  const b = attentionBuffers(device, pipeline, spec, shape)
  try {
    writeOperand(device, b.q, q, false)
    writeOperand(device, b.k, k, true)
    writeOperand(device, b.v, v, true)
    const encoder = device.createCommandEncoder()
    const pass = encoder.beginComputePass()
    encodeAttention(pass, pipeline, b, spec, shape)
    pass.end()
    device.queue.submit([encoder.finish()])
    const [o, lse] = await Promise.all([readFloat32(device, b.o, shape.rows * D), readFloat32(device, b.lse, shape.rows)])
    const rows = (a: Float32Array, n: number) => Array.from({ length: n }, (_, i) => a.subarray(i * D, (i + 1) * D))
    const keys = rows(k, shape.keys)
    const values = rows(v, shape.keys)
    const expectedO = new Float64Array(shape.rows * D)
    let lseError = 0
    for (let r = 0; r < shape.rows; r++) {
      const state = attendSegment(q.subarray(r * D, (r + 1) * D), keys, values, 1 / Math.sqrt(D))
      expectedO.set(state.o, r * D)
      const d = Math.abs(lse[r]! - state.lse)
      lseError = Number.isNaN(d) ? Infinity : Math.max(lseError, d)
    }
    return { pipeline, error: Math.max(relativeError(o, expectedO), lseError) }
  } finally {
    b.destroy()
  }
}

/** Times the kernel on `shape`; its rate counts the two products' 4·rows·keys·D flops (not the scores' second walk). */
export const timeAttention = async (device: GPUDevice, pipeline: GPUComputePipeline, spec: AttentionMatrixSpec, shape: AttentionProductShape) => {
  const b = attentionBuffers(device, pipeline, spec, shape)
  const D = spec.headDim
  try {
    writeOperand(device, b.q, repeatedValues(shape.rows * D, 41), false)
    writeOperand(device, b.k, repeatedValues(shape.keys * D, 42), true)
    writeOperand(device, b.v, repeatedValues(shape.keys * D, 43), true)
    const timing = await timeGpu(device, (encoder) => {
      const pass = encoder.beginComputePass({ label: "subgroup-matrix attention probe" })
      encodeAttention(pass, pipeline, b, spec, shape)
      pass.end()
    })
    const flops = 4 * shape.rows * shape.keys * D
    return { ...shape, headDim: D, ms: timing.medianMs, tflops: flops / (timing.medianMs * 1e9), timing: timing.source }
  } finally {
    b.destroy()
  }
}
