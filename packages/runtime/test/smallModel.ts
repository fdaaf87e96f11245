/**
 * The small Llama-shaped model the engine tests run: two layers, grouped KV
 * heads, a 40-token byte vocabulary, seeded synthetic f32 weights.
 */
import type { ModelConfig } from "../src/model/config.ts"
import type { LoadedModel } from "../src/model/model.ts"
import { byteTokenizer } from "../src/model/tokenizer.ts"
import { synthesizeHostWeights, uploadWeights } from "../src/model/weights.ts"

export const SMALL_CONFIG: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: { type: "none" }, vocabSize: 40,
  tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 512, bosTokenId: undefined, eosTokenIds: []
}

export const smallModel = (device: GPUDevice, seed: number): LoadedModel => ({
  config: SMALL_CONFIG,
  weights: uploadWeights(device, SMALL_CONFIG, synthesizeHostWeights(SMALL_CONFIG, seed), "f32"),
  tokenizer: byteTokenizer(SMALL_CONFIG.vocabSize)
})

/** Largest absolute difference over the reference's largest magnitude. */
export const relError = (got: ArrayLike<number>, want: ArrayLike<number>): number => {
  let diff = 0
  let scale = 1e-6
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!))
    scale = Math.max(scale, Math.abs(want[i]!))
  }
  return diff / scale
}
