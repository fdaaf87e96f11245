/**
 * The GPU buffers of a model's weights and their allocation; the loaders
 * (weights.ts, synthesize.ts) fill the targets allocateWeights returns.
 *
 * Layouts (row-major; matrices of the model's weightType — f32, or f16 / bf16
 * two to a 32-bit word, see the kernels' weightType.ts; norms and biases always f32):
 *   embedding   [vocab][hidden]            lmHead [vocab][hidden] (the same buffer when tied)
 *   qkv         [(heads + 2·kvHeads)·headDim][hidden]   q rows, then k rows, then v rows (one matmul for all three)
 *   qkvBias     [(heads + 2·kvHeads)·headDim]           q, k, v biases end to end (attention_bias models)
 *   o           [hidden][heads·headDim]
 *   gateUp      [2·inter][hidden]          gate rows first, then up rows (one matmul for both)
 *   down        [hidden][inter]
 *   norms       [hidden]
 * A buffer of several tensors holds them as the file stores them, one after
 * the other (the loaders stream each tensor into place: no joined copy). A
 * 16-bit buffer of an odd number of elements ends with a half-empty word; up
 * starts mid-word when gate's inter·hidden is odd (k and v never do: head
 * dims are even).
 */
import { createStorageBuffer, type WeightType, weightBytes } from "@canopy/kernels"
import type { ModelConfig } from "./config.ts"
import { elementCount, isMatrix, layerPrefix, type TensorSpec, tensorSpecs } from "./tensors.ts"

export interface LayerWeights {
  readonly inputNorm: GPUBuffer
  readonly qkv: GPUBuffer
  readonly qkvBias: GPUBuffer | undefined
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
  /** GPU memory the weight buffers take, in bytes */
  readonly bytes: number
  destroy(): void
}

/** One weight buffer to fill: the tensors it holds end to end (q, k, v in qkv and qkvBias; gate then up in gateUp; one tensor elsewhere), as `type`. */
export interface WeightTarget {
  readonly buffer: GPUBuffer
  readonly parts: ReadonlyArray<TensorSpec>
  readonly type: WeightType
}

/** Allocates the weight buffers of `c`, matrices as `weightType`; the caller fills every target. */
export const allocateWeights = (
  device: GPUDevice,
  c: ModelConfig,
  weightType: WeightType
): { readonly weights: ModelWeights; readonly targets: ReadonlyArray<WeightTarget> } => {
  const all: Array<GPUBuffer> = []
  const targets: Array<WeightTarget> = []
  const specs = new Map(tensorSpecs(c).map((s) => [s.name, s]))
  const held = (label: string, parts: ReadonlyArray<TensorSpec>): GPUBuffer => {
    const type = isMatrix(parts[0]!) ? weightType : "f32"
    const elements = parts.reduce((n, spec) => n + elementCount(spec.shape), 0)
    const buffer = createStorageBuffer(device, label, weightBytes(type, elements))
    all.push(buffer)
    targets.push({ buffer, parts, type })
    return buffer
  }
  const tensor = (name: string): GPUBuffer => held(name, [specs.get(name)!])
  const joined = (label: string, names: ReadonlyArray<string>): GPUBuffer => held(label, names.map((name) => specs.get(name)!))
  try {
    const embedding = tensor("model.embed_tokens.weight")
    const layers = Array.from({ length: c.numLayers }, (_, l): LayerWeights => {
      const p = layerPrefix(l)
      const projections = (part: "weight" | "bias") => ["q_proj", "k_proj", "v_proj"].map((name) => `${p}self_attn.${name}.${part}`)
      return {
        inputNorm: tensor(`${p}input_layernorm.weight`),
        qkv: joined(`${p}self_attn.qkv`, projections("weight")),
        qkvBias: c.attentionBias ? joined(`${p}self_attn.qkv.bias`, projections("bias")) : undefined,
        o: tensor(`${p}self_attn.o_proj.weight`),
        postNorm: tensor(`${p}post_attention_layernorm.weight`),
        gateUp: joined(`${p}mlp.gate_up`, [`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`]),
        down: tensor(`${p}mlp.down_proj.weight`)
      }
    })
    const finalNorm = tensor("model.norm.weight")
    const lmHead = c.tieWordEmbeddings ? embedding : tensor("lm_head.weight")
    const bytes = all.reduce((n, b) => n + b.size, 0)
    let destroyed = false
    const weights: ModelWeights = {
      config: c, embedding, layers, finalNorm, lmHead, weightType, bytes,
      destroy() {
        if (destroyed) return
        destroyed = true
        for (const b of all) b.destroy()
      }
    }
    return { weights, targets }
  } catch (e) {
    for (const b of all) b.destroy()
    throw e
  }
}
