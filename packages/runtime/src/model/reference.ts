/**
 * A float64 CPU forward pass of the Llama architecture, the oracle for the GPU
 * path: embedding → per layer [RMSNorm → q/k/v (+bias) → RoPE → causal GQA
 * attention over the whole sequence → o-proj + residual → RMSNorm → SwiGLU MLP
 * + residual] → final norm → lm_head (or the tied embedding).
 */
import { referenceMatmul, referenceRmsNorm, referenceRope, referenceSwiglu } from "@canopy/kernels"
import { type ModelConfig, ropeSpec } from "./config.ts"
import { TensorShapeMismatch } from "./errors.ts"
import { layerPrefix } from "./tensors.ts"
import type { HostWeights } from "./weights.ts"

/** Causal grouped-query attention: q [n][H][d], k/v [n][Hkv][d] → [n][H][d], scale 1/√d. */
export const referenceCausalAttention = (
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  n: number,
  heads: number,
  kvHeads: number,
  d: number
): Float64Array => {
  const out = new Float64Array(n * heads * d)
  const group = heads / kvHeads
  const scale = 1 / Math.sqrt(d)
  const scores = new Float64Array(n)
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group)
      let max = -Infinity
      for (let s = 0; s <= t; s++) {
        let dot = 0
        for (let i = 0; i < d; i++) dot += q[(t * heads + h) * d + i]! * k[(s * kvHeads + kh) * d + i]!
        scores[s] = dot * scale
        max = Math.max(max, scores[s]!)
      }
      let sum = 0
      for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s]! - max)
      for (let s = 0; s <= t; s++) {
        const p = scores[s]! / sum
        for (let i = 0; i < d; i++) out[(t * heads + h) * d + i]! += p * v[(s * kvHeads + kh) * d + i]!
      }
    }
  }
  return out
}

/** Logits [tokens.length][vocab] of every position of one sequence starting at position 0. */
export const referenceLogits = (c: ModelConfig, w: HostWeights, tokens: ArrayLike<number>): Array<Float64Array> => {
  const get = (name: string): ArrayLike<number> => {
    const t = w.get(name)
    if (t === undefined) throw new TensorShapeMismatch({ tensor: name, expected: [], actual: undefined })
    return t
  }
  const n = tokens.length
  const hd = c.hiddenSize
  const qDim = c.numHeads * c.headDim
  const kvDim = c.numKvHeads * c.headDim
  const positions = Array.from({ length: n }, (_, i) => i)
  const embed = get("model.embed_tokens.weight")
  let x = new Float64Array(n * hd)
  for (let t = 0; t < n; t++) for (let j = 0; j < hd; j++) x[t * hd + j] = embed[tokens[t]! * hd + j]!
  const optional = (name: string): ArrayLike<number> | undefined => (c.attentionBias ? get(name) : undefined)
  for (let l = 0; l < c.numLayers; l++) {
    const p = layerPrefix(l)
    const xn = referenceRmsNorm(x, get(`${p}input_layernorm.weight`), hd, c.rmsNormEps)
    const q = referenceRope(
      referenceMatmul(xn, get(`${p}self_attn.q_proj.weight`), hd, qDim, optional(`${p}self_attn.q_proj.bias`)),
      c.numHeads, positions, ropeSpec(c))
    const k = referenceRope(
      referenceMatmul(xn, get(`${p}self_attn.k_proj.weight`), hd, kvDim, optional(`${p}self_attn.k_proj.bias`)),
      c.numKvHeads, positions, ropeSpec(c))
    const v = referenceMatmul(xn, get(`${p}self_attn.v_proj.weight`), hd, kvDim, optional(`${p}self_attn.v_proj.bias`))
    const attn = referenceCausalAttention(q, k, v, n, c.numHeads, c.numKvHeads, c.headDim)
    const o = referenceMatmul(attn, get(`${p}self_attn.o_proj.weight`), qDim, hd)
    x = x.map((xv, i) => xv + o[i]!)
    const xn2 = referenceRmsNorm(x, get(`${p}post_attention_layernorm.weight`), hd, c.rmsNormEps)
    const gate = referenceMatmul(xn2, get(`${p}mlp.gate_proj.weight`), hd, c.intermediateSize)
    const up = referenceMatmul(xn2, get(`${p}mlp.up_proj.weight`), hd, c.intermediateSize)
    const gateUp = new Float64Array(n * 2 * c.intermediateSize)
    for (let t = 0; t < n; t++) {
      gateUp.set(gate.subarray(t * c.intermediateSize, (t + 1) * c.intermediateSize), t * 2 * c.intermediateSize)
      gateUp.set(up.subarray(t * c.intermediateSize, (t + 1) * c.intermediateSize), (t * 2 + 1) * c.intermediateSize)
    }
    const down = referenceMatmul(referenceSwiglu(gateUp, n, c.intermediateSize), get(`${p}mlp.down_proj.weight`), c.intermediateSize, hd)
    x = x.map((xv, i) => xv + down[i]!)
  }
  const final = referenceRmsNorm(x, get("model.norm.weight"), hd, c.rmsNormEps)
  const head = c.tieWordEmbeddings ? embed : get("lm_head.weight")
  const logits = referenceMatmul(final, head, hd, c.vocabSize)
  return Array.from({ length: n }, (_, t) => logits.slice(t * c.vocabSize, (t + 1) * c.vocabSize))
}
