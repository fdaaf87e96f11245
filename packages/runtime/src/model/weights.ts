/**
 * ModelWeights: the model's tensors as GPU buffers, loaded from a
 * safetensors folder, uploaded from host arrays, or synthesized on the GPU.
 *
 * Layouts (row-major; matrices f32, or bf16 two to a word when the checkpoint
 * is bf16 — see ModelWeights.weightType; norms and biases always f32):
 *   embedding   [vocab][hidden]            lmHead [vocab][hidden] (the same buffer when tied)
 *   q           [heads·headDim][hidden]    qBias [heads·headDim]
 *   k, v        [kvHeads·headDim][hidden]  kBias, vBias [kvHeads·headDim]
 *   o           [hidden][heads·headDim]
 *   gateUp      [2·inter][hidden]          gate rows first, then up rows (one matmul for both)
 *   down        [hidden][inter]
 *   norms       [hidden]
 */
import { createStorageBuffer, FillKernel, packBf16, referenceFill, weightBytes, type WeightType } from "@canopy/kernels"
import type { ModelConfig } from "./config.ts"
import { type ModelFolder, openModelFolder } from "./folder.ts"
import { checkShapes, elementCount, layerPrefix, syntheticScale, type TensorSpec, tensorSpecs } from "./tensors.ts"

export interface LayerWeights {
  readonly inputNorm: GPUBuffer
  readonly q: GPUBuffer
  readonly k: GPUBuffer
  readonly v: GPUBuffer
  readonly qBias: GPUBuffer | undefined
  readonly kBias: GPUBuffer | undefined
  readonly vBias: GPUBuffer | undefined
  readonly o: GPUBuffer
  readonly postNorm: GPUBuffer
  readonly gateUp: GPUBuffer
  readonly down: GPUBuffer
}

export interface ModelWeights {
  readonly config: ModelConfig
  readonly embedding: GPUBuffer
  readonly layers: ReadonlyArray<LayerWeights>
  readonly finalNorm: GPUBuffer
  readonly lmHead: GPUBuffer
  /** how the matrices are held (embedding, projections, lm_head); norms and biases are f32 */
  readonly weightType: WeightType
  destroy(): void
}

/** Host tensors by Hugging Face name (f32 or f64 values). */
export type HostWeights = ReadonlyMap<string, ArrayLike<number>>

/** Matrices may be held as bf16; norms and biases stay f32 (small, and read as f32 everywhere). */
const isMatrix = (spec: TensorSpec): boolean => spec.role !== "norm" && spec.role !== "bias"

/**
 * The weight type a model can be held in: bf16 packs two values to a word, so
 * every matrix (and gate/up's split point) must hold an even number of values.
 */
export const supportedWeightType = (c: ModelConfig, wanted: WeightType): WeightType =>
  wanted === "bf16" && tensorSpecs(c).every((spec) => !isMatrix(spec) || elementCount(spec.shape) % 2 === 0) ? "bf16" : "f32"

/**
 * Allocates the weight buffers and hands each tensor to `fill(name, buffer,
 * byteOffset, type)` to write it as `type`; gate and up share the gateUp
 * buffer, up after gate's inter·hidden values.
 */
const allocate = (
  device: GPUDevice,
  c: ModelConfig,
  weightType: WeightType,
  fill: (name: string, buffer: GPUBuffer, byteOffset: number, type: WeightType) => void
): ModelWeights => {
  const all: Array<GPUBuffer> = []
  const specs = new Map(tensorSpecs(c).map((s) => [s.name, s]))
  const typeOf = (name: string): WeightType => (isMatrix(specs.get(name)!) ? weightType : "f32")
  const make = (name: string, elements = elementCount(specs.get(name)!.shape), type = typeOf(name)): GPUBuffer => {
    const buffer = createStorageBuffer(device, name, weightBytes(type, elements))
    all.push(buffer)
    return buffer
  }
  const tensor = (name: string): GPUBuffer => {
    const buffer = make(name)
    fill(name, buffer, 0, typeOf(name))
    return buffer
  }
  try {
    const embedding = tensor("model.embed_tokens.weight")
    const layers = Array.from({ length: c.numLayers }, (_, l): LayerWeights => {
      const p = layerPrefix(l)
      const bias = (name: string): GPUBuffer | undefined => (c.attentionBias ? tensor(`${p}self_attn.${name}.bias`) : undefined)
      const gateUp = make(`${p}mlp.gate_up`, 2 * c.intermediateSize * c.hiddenSize, weightType)
      fill(`${p}mlp.gate_proj.weight`, gateUp, 0, weightType)
      fill(`${p}mlp.up_proj.weight`, gateUp, weightBytes(weightType, c.intermediateSize * c.hiddenSize), weightType)
      return {
        inputNorm: tensor(`${p}input_layernorm.weight`),
        q: tensor(`${p}self_attn.q_proj.weight`),
        k: tensor(`${p}self_attn.k_proj.weight`),
        v: tensor(`${p}self_attn.v_proj.weight`),
        qBias: bias("q_proj"),
        kBias: bias("k_proj"),
        vBias: bias("v_proj"),
        o: tensor(`${p}self_attn.o_proj.weight`),
        postNorm: tensor(`${p}post_attention_layernorm.weight`),
        gateUp,
        down: tensor(`${p}mlp.down_proj.weight`)
      }
    })
    const finalNorm = tensor("model.norm.weight")
    const lmHead = c.tieWordEmbeddings ? embedding : tensor("lm_head.weight")
    let destroyed = false
    return {
      config: c, embedding, layers, finalNorm, lmHead, weightType,
      destroy() {
        if (destroyed) return
        destroyed = true
        for (const b of all) b.destroy()
      }
    }
  } catch (e) {
    for (const b of all) b.destroy()
    throw e
  }
}

const write = (device: GPUDevice, buffer: GPUBuffer, byteOffset: number, values: ArrayLike<number>, type: WeightType): void => {
  const data = type === "bf16" ? packBf16(values) : values instanceof Float32Array ? values : Float32Array.from(values)
  device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength)
}

/** Uploads host tensors (checked against the config first), matrices as `weightType` where the shapes allow. */
export const uploadWeights = (device: GPUDevice, c: ModelConfig, host: HostWeights, weightType: WeightType = "f32"): ModelWeights => {
  const shapes = new Map<string, ReadonlyArray<number>>()
  for (const spec of tensorSpecs(c)) {
    const values = host.get(spec.name)
    if (values !== undefined) shapes.set(spec.name, values.length === elementCount(spec.shape) ? spec.shape : [values.length])
  }
  checkShapes(c, shapes)
  return allocate(device, c, supportedWeightType(c, weightType), (name, buffer, offset, type) => write(device, buffer, offset, host.get(name)!, type))
}

/**
 * Loads config.json and the safetensors of a Hugging Face model folder onto the
 * GPU. Matrices stored as bf16 stay bf16 (exactly, at half the memory of f32);
 * anything else is widened to f32. The folder, every header and every shape
 * are checked (see openModelFolder) before any tensor data is read.
 */
export const loadWeights = async (
  device: GPUDevice,
  dir: string,
  /** after each tensor: how many of how many are on the GPU */
  onProgress?: (loaded: number, total: number) => void
): Promise<ModelWeights> => {
  const folder = await openModelFolder(dir)
  try {
    return await uploadFolder(device, folder, onProgress)
  } finally {
    await folder.source.close()
  }
}

/** Uploads the tensors of a checked folder (see openModelFolder); the caller closes its source. */
export const uploadFolder = async (
  device: GPUDevice,
  { config, source }: ModelFolder,
  onProgress?: (loaded: number, total: number) => void
): Promise<ModelWeights> => {
  const allBf16 = tensorSpecs(config).every((spec) => !isMatrix(spec) || source.tensors.get(spec.name)?.dtype === "BF16")
  const targets: Array<readonly [string, GPUBuffer, number, WeightType]> = []
  const weights = allocate(device, config, supportedWeightType(config, allBf16 ? "bf16" : "f32"),
    (name, buffer, offset, type) => targets.push([name, buffer, offset, type]))
  try {
    // One tensor at a time: host memory holds a single tensor, not the model.
    for (const [i, [name, buffer, offset, type]] of targets.entries()) {
      write(device, buffer, offset, await source.readF32(name), type)
      onProgress?.(i + 1, targets.length)
    }
  } catch (e) {
    weights.destroy()
    throw e
  }
  return weights
}

/** Reads every tensor of a model folder into host arrays (for the CPU reference on small models). */
export const loadHostWeights = async (dir: string): Promise<{ config: ModelConfig; weights: HostWeights }> => {
  const { config, source } = await openModelFolder(dir)
  try {
    const weights = new Map<string, Float32Array>()
    for (const spec of tensorSpecs(config)) weights.set(spec.name, await source.readF32(spec.name))
    return { config, weights }
  } finally {
    await source.close()
  }
}

/**
 * Synthetic weights generated on the GPU from (seed, tensor id, index); nothing
 * is uploaded, so this serves 13B-parameter shapes as well as tiny ones.
 */
export const synthesizeWeights = async (device: GPUDevice, c: ModelConfig, seed: number): Promise<ModelWeights> => {
  const fill = await FillKernel.create(device)
  const specs = tensorSpecs(c)
  const ids = new Map(specs.map((s, i) => [s.name, i]))
  const bySpec = new Map(specs.map((s) => [s.name, s]))
  const temps: Array<GPUBuffer> = []
  // The up rows go after the gate rows in gateUp: they are filled into a scratch
  // buffer and copied, since the fill kernel writes from offset 0.
  let scratch: GPUBuffer | undefined
  let encoder = device.createCommandEncoder()
  let queued = 0
  const flush = (): void => {
    device.queue.submit([encoder.finish()])
    encoder = device.createCommandEncoder()
    queued = 0
  }
  // The fill kernel writes f32: synthetic matrices are held as f32.
  const weights = allocate(device, c, "f32", (name, buffer, offset) => {
    const spec = bySpec.get(name)!
    const count = elementCount(spec.shape)
    const params = { seed, tensorId: ids.get(name)!, ...syntheticScale(c, spec) }
    if (offset === 0) {
      temps.push(fill.encode(encoder, buffer, count, params))
    } else {
      scratch ??= createStorageBuffer(device, "synthetic-scratch", count * 4)
      temps.push(fill.encode(encoder, scratch, count, params))
      encoder.copyBufferToBuffer(scratch, 0, buffer, offset, count * 4)
    }
    // Submit in batches so a deep model does not build one enormous command buffer.
    if (++queued >= 64) flush()
  })
  flush()
  await device.queue.onSubmittedWorkDone()
  for (const t of temps) t.destroy()
  scratch?.destroy()
  return weights
}

/** The same synthetic weights on the CPU, bit for bit (use for small models only). */
export const synthesizeHostWeights = (c: ModelConfig, seed: number): Map<string, Float32Array> =>
  new Map(tensorSpecs(c).map((spec, tensorId) =>
    [spec.name, referenceFill(elementCount(spec.shape), { seed, tensorId, ...syntheticScale(c, spec) })]))
