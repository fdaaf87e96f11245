/**
 * Synthetic weights: drawn from (seed, tensor id, index) by the kernels' fill
 * (fill.ts), then rounded to the model's dtype — the values a checkpoint of
 * that dtype would hold, held the way a loaded one is (matrices in the dtype,
 * norms and biases widened to f32).
 *
 * Matrices are made on the GPU, so nothing is uploaded and 13B-parameter
 * shapes work as well as tiny ones: f32 ones are filled in place, f16 and
 * bf16 ones are filled into an f32 scratch buffer the size of the largest
 * matrix and packed from there. Norms and biases, a few thousand values a
 * layer, come from the fill's CPU twin (the same values bit for bit).
 */
import { createStorageBuffer, FillKernel, type FillSpec, PackWeightsKernel, referenceFill, roundWeights, type WeightType } from "@canopy/kernels"
import type { ModelConfig } from "./config.ts"
import { elementCount, isMatrix, syntheticScale, type TensorSpec, tensorSpecs } from "./tensors.ts"
import { allocateWeights, type ModelWeights, type WeightTarget } from "./weightBuffers.ts"

/** The fill of each tensor of `c`: its index is its tensor id. */
const fillSpecs = (c: ModelConfig, seed: number): ((spec: TensorSpec) => FillSpec) => {
  const ids = new Map(tensorSpecs(c).map((s, i) => [s.name, i]))
  return (spec) => ({ seed, tensorId: ids.get(spec.name)!, ...syntheticScale(c, spec) })
}

const hostTensor = (spec: TensorSpec, fill: FillSpec, dtype: WeightType): Float32Array => {
  const values = referenceFill(elementCount(spec.shape), fill)
  return dtype === "f32" ? values : roundWeights(dtype, values)
}

/** The same synthetic weights on the CPU, bit for bit (use for small models only). */
export const synthesizeHostWeights = (c: ModelConfig, seed: number, dtype: WeightType = "f32"): Map<string, Float32Array> => {
  const fillOf = fillSpecs(c, seed)
  return new Map(tensorSpecs(c).map((spec) => [spec.name, hostTensor(spec, fillOf(spec), dtype)]))
}

/** Each part of a matrix target with its first element in the target's buffer. */
const partsAt = (target: WeightTarget): ReadonlyArray<readonly [TensorSpec, number]> => {
  let at = 0
  return target.parts.map((spec) => {
    const first = at
    at += elementCount(spec.shape)
    return [spec, first] as const
  })
}

/**
 * Encodes the matrices' fills, submitting every 64 tensors so a deep model does
 * not build one enormous command buffer; resolves when the GPU has run them all.
 */
const fillMatrices = async (device: GPUDevice, targets: ReadonlyArray<WeightTarget>, fillOf: (spec: TensorSpec) => FillSpec, dtype: WeightType) => {
  const [fill, pack] = await Promise.all([FillKernel.create(device), dtype === "f32" ? undefined : PackWeightsKernel.create(device, dtype)])
  const placed = targets.flatMap((target) => partsAt(target).map(([spec, first]) => ({ target, spec, first })))
  // f32 tensors at offset 0 are filled in place; the rest go through the scratch (the fill writes from element 0).
  const viaScratch = placed.filter((p) => pack !== undefined || p.first > 0)
  const scratchElements = viaScratch.reduce((n, p) => Math.max(n, elementCount(p.spec.shape)), 0)
  const scratch = scratchElements > 0 ? createStorageBuffer(device, "synthetic-scratch", scratchElements * 4) : undefined
  const temps: Array<GPUBuffer> = []
  try {
    let encoder = device.createCommandEncoder()
    for (const [i, { target, spec, first }] of placed.entries()) {
      const count = elementCount(spec.shape)
      if (pack === undefined && first === 0) {
        temps.push(fill.encode(encoder, target.buffer, count, fillOf(spec)))
      } else {
        temps.push(fill.encode(encoder, scratch!, count, fillOf(spec)))
        if (pack === undefined) encoder.copyBufferToBuffer(scratch!, 0, target.buffer, first * 4, count * 4)
        else temps.push(pack.encode(encoder, scratch!, target.buffer, count, first))
      }
      if ((i + 1) % 64 === 0 || i === placed.length - 1) {
        device.queue.submit([encoder.finish()])
        encoder = device.createCommandEncoder()
      }
    }
    await device.queue.onSubmittedWorkDone()
  } finally {
    for (const t of temps) t.destroy()
    scratch?.destroy()
  }
}

/** Synthetic weights on the GPU, matrices held as `dtype` (see the header). */
export const synthesizeWeights = async (device: GPUDevice, c: ModelConfig, seed: number, dtype: WeightType = "f32"): Promise<ModelWeights> => {
  const { weights, targets } = allocateWeights(device, c, dtype)
  const fillOf = fillSpecs(c, seed)
  try {
    const matrices = targets.filter((t) => isMatrix(t.parts[0]!))
    for (const t of targets) {
      if (isMatrix(t.parts[0]!)) continue
      // f32, so each part of a joined target (the q, k, v biases) starts at a whole word
      for (const [spec, first] of partsAt(t)) {
        const values = hostTensor(spec, fillOf(spec), dtype)
        device.queue.writeBuffer(t.buffer, first * 4, values.buffer, values.byteOffset, values.byteLength)
      }
    }
    await fillMatrices(device, matrices, fillOf, dtype)
  } catch (e) {
    weights.destroy()
    throw e
  }
  return weights
}
