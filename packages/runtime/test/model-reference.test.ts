import { referenceRmsNorm } from "@canopy/kernels"
import { describe, expect, it } from "vitest"
import type { ModelConfig } from "../src/model/config.ts"
import { referenceCausalAttention, referenceLogits } from "../src/model/reference.ts"
import { PRESETS } from "../src/model/synthetic.ts"
import { layerPrefix } from "../src/model/tensors.ts"
import { synthesizeHostWeights } from "../src/model/weights.ts"

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12) => {
  expect(a.length).toBe(b.length)
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i]!)))
}

const small: ModelConfig = { ...PRESETS.tiny, hiddenSize: 8, intermediateSize: 12, numHeads: 2, numKvHeads: 1, headDim: 4, numLayers: 2, vocabSize: 11 }

describe("referenceLogits", () => {
  it("with zero attention and MLP outputs, logits = lm_head · norm(embedding) at every position", () => {
    const w = synthesizeHostWeights(small, 1)
    for (let l = 0; l < small.numLayers; l++) {
      w.get(`${layerPrefix(l)}self_attn.o_proj.weight`)!.fill(0)
      w.get(`${layerPrefix(l)}mlp.down_proj.weight`)!.fill(0)
    }
    const tokens = [3, 0, 10, 3]
    const logits = referenceLogits(small, w, tokens)
    const embed = w.get("model.embed_tokens.weight")!
    const head = w.get("lm_head.weight")!
    tokens.forEach((t, pos) => {
      const normed = referenceRmsNorm(embed.subarray(t * 8, t * 8 + 8), w.get("model.norm.weight")!, 8, small.rmsNormEps)
      const expected = Array.from({ length: small.vocabSize }, (_, v) => normed.reduce((s, x, j) => s + x * head[v * 8 + j]!, 0))
      close(logits[pos]!, expected)
    })
    expect(logits[0]).toEqual(logits[3])
  })

  it("a one-layer single-token model computed by hand: attention of one token returns its value vector", () => {
    // hidden 2, 1 head of dim 2, intermediate 1, vocab 2; every weight chosen so the result is a few products.
    const c: ModelConfig = { ...PRESETS.tiny, hiddenSize: 2, intermediateSize: 1, numLayers: 1, numHeads: 1, numKvHeads: 1, headDim: 2, vocabSize: 2, rmsNormEps: 0 }
    const p = layerPrefix(0)
    const w = new Map<string, Float64Array>([
      ["model.embed_tokens.weight", Float64Array.of(3, 4, 1, 0)],
      [`${p}input_layernorm.weight`, Float64Array.of(1, 1)],
      [`${p}self_attn.q_proj.weight`, Float64Array.of(1, 0, 0, 1)],
      [`${p}self_attn.k_proj.weight`, Float64Array.of(1, 0, 0, 1)],
      [`${p}self_attn.v_proj.weight`, Float64Array.of(2, 0, 0, 1)],
      [`${p}self_attn.o_proj.weight`, Float64Array.of(1, 0, 0, 1)],
      [`${p}post_attention_layernorm.weight`, Float64Array.of(1, 1)],
      [`${p}mlp.gate_proj.weight`, Float64Array.of(1, 0)],
      [`${p}mlp.up_proj.weight`, Float64Array.of(0, 1)],
      [`${p}mlp.down_proj.weight`, Float64Array.of(1, 1)],
      ["model.norm.weight", Float64Array.of(1, 1)],
      ["lm_head.weight", Float64Array.of(1, 0, 0, 1)]
    ])
    // token 0: e = (3, 4), rms = √12.5, n = e/√12.5; attention of one token = v = (2·n0, n1); x1 = e + v
    const e = [3, 4]
    const rms = (v: ReadonlyArray<number>) => Math.sqrt((v[0]! ** 2 + v[1]! ** 2) / 2)
    const n = e.map((x) => x / rms(e))
    const x1 = [e[0]! + 2 * n[0]!, e[1]! + n[1]!]
    const m = x1.map((x) => x / rms(x1))
    const h = (m[0]! / (1 + Math.exp(-m[0]!))) * m[1]!
    const x2 = [x1[0]! + h, x1[1]! + h]
    const out = x2.map((x) => x / rms(x2))
    close(referenceLogits(c, w, [0])[0]!, out)
  })

  it("causal attention: the first position sees only itself, the last averages with softmax weights", () => {
    const q = Float64Array.of(1, 0, 0, 1)
    const k = Float64Array.of(1, 0, 0, 1)
    const v = Float64Array.of(5, 6, 7, 8)
    const out = referenceCausalAttention(q, k, v, 2, 1, 1, 2)
    close(out.subarray(0, 2), [5, 6])
    const s = 1 / Math.sqrt(2)
    const w0 = 1 / (1 + Math.exp(s))
    close(out.subarray(2, 4), [w0 * 5 + (1 - w0) * 7, w0 * 6 + (1 - w0) * 8])
  })

  it("tied embeddings use the embedding as lm_head", () => {
    const tied = { ...small, tieWordEmbeddings: true }
    const w = synthesizeHostWeights(tied, 2)
    expect(w.has("lm_head.weight")).toBe(false)
    const untied = new Map(w)
    untied.set("lm_head.weight", w.get("model.embed_tokens.weight")!)
    expect(referenceLogits(tied, w, [1, 2])).toEqual(referenceLogits(small, untied, [1, 2]))
  })
})
