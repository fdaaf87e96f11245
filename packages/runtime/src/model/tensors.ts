/**
 * The tensors of a Llama-family checkpoint: Hugging Face names, the shapes
 * config.json implies, and the scale synthetic weights are drawn with.
 */
import type { ModelConfig } from "./config.ts"

export type TensorRole = "embedding" | "norm" | "projection" | "residual-projection" | "bias" | "lm-head"

export interface TensorSpec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly role: TensorRole
}

export const layerPrefix = (layer: number): string => `model.layers.${layer}.`

/** Every tensor the architecture reads, in a fixed order (its index is the synthetic tensor id). */
export const tensorSpecs = (c: ModelConfig): ReadonlyArray<TensorSpec> => {
  const qDim = c.numHeads * c.headDim
  const kvDim = c.numKvHeads * c.headDim
  const specs: Array<TensorSpec> = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, c.hiddenSize], role: "embedding" }]
  for (let l = 0; l < c.numLayers; l++) {
    const p = layerPrefix(l)
    specs.push(
      { name: `${p}input_layernorm.weight`, shape: [c.hiddenSize], role: "norm" },
      { name: `${p}self_attn.q_proj.weight`, shape: [qDim, c.hiddenSize], role: "projection" },
      { name: `${p}self_attn.k_proj.weight`, shape: [kvDim, c.hiddenSize], role: "projection" },
      { name: `${p}self_attn.v_proj.weight`, shape: [kvDim, c.hiddenSize], role: "projection" }
    )
    if (c.attentionBias) {
      specs.push(
        { name: `${p}self_attn.q_proj.bias`, shape: [qDim], role: "bias" },
        { name: `${p}self_attn.k_proj.bias`, shape: [kvDim], role: "bias" },
        { name: `${p}self_attn.v_proj.bias`, shape: [kvDim], role: "bias" }
      )
    }
    specs.push(
      { name: `${p}self_attn.o_proj.weight`, shape: [c.hiddenSize, qDim], role: "residual-projection" },
      { name: `${p}post_attention_layernorm.weight`, shape: [c.hiddenSize], role: "norm" },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, c.hiddenSize], role: "projection" },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, c.hiddenSize], role: "projection" },
      { name: `${p}mlp.down_proj.weight`, shape: [c.hiddenSize, c.intermediateSize], role: "residual-projection" }
    )
  }
  specs.push({ name: "model.norm.weight", shape: [c.hiddenSize], role: "norm" })
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, c.hiddenSize], role: "lm-head" })
  return specs
}

export const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/**
 * Uniform half-width (and centre) of a synthetic tensor: projections keep unit
 * variance (a = √(3/in)); the ones that feed the residual stream are shrunk by
 * √(2·layers) so the stream stays O(1) through depth; norms sit near 1.
 */
export const syntheticScale = (c: ModelConfig, spec: TensorSpec): { readonly scale: number; readonly offset: number } => {
  const fanIn = spec.shape[spec.shape.length - 1]!
  switch (spec.role) {
    case "embedding":
      return { scale: 1, offset: 0 }
    case "norm":
      return { scale: 0.1, offset: 1 }
    case "bias":
      return { scale: 0.1, offset: 0 }
    case "projection":
    case "lm-head":
      return { scale: Math.sqrt(3 / fanIn), offset: 0 }
    case "residual-projection":
      return { scale: Math.sqrt(3 / fanIn) / Math.sqrt(2 * c.numLayers), offset: 0 }
  }
}
