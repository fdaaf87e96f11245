import { describe, expect, it } from "vitest"
import { configToJson, parseModelConfig } from "../src/model/config.ts"
import { ModelConfigError } from "../src/model/errors.ts"
import { PRESETS } from "../src/model/synthetic.ts"

const codellama7b = {
  architectures: ["LlamaForCausalLM"], hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, rms_norm_eps: 1e-5, rope_theta: 1000000, rope_scaling: null,
  vocab_size: 32016, tie_word_embeddings: false, max_position_embeddings: 16384, bos_token_id: 1, eos_token_id: 2,
  hidden_act: "silu", torch_dtype: "bfloat16"
}

const errorOf = (json: unknown): ModelConfigError => {
  try {
    parseModelConfig(json)
  } catch (e) {
    if (e instanceof ModelConfigError) return e
    throw e
  }
  throw new Error("expected a ModelConfigError")
}

describe("parseModelConfig", () => {
  it("reads a CodeLlama config into the codellama-7b preset", () => {
    expect(parseModelConfig(codellama7b)).toEqual(PRESETS["codellama-7b"])
  })

  it("applies Qwen2's defaults (q/k/v biases) and reads head_dim, GQA, eos lists and rope scaling", () => {
    const c = parseModelConfig({
      ...codellama7b, architectures: ["Qwen2ForCausalLM"], num_key_value_heads: 8, head_dim: 256,
      eos_token_id: [2, 32000], rope_scaling: { type: "linear", factor: 2 }, use_sliding_window: false, sliding_window: 4096
    })
    expect(c.attentionBias).toBe(true)
    expect(c.headDim).toBe(256)
    expect(c.numKvHeads).toBe(8)
    expect(c.eosTokenIds).toEqual([2, 32000])
    expect(c.ropeScaling).toEqual({ type: "linear", factor: 2 })
    expect(parseModelConfig({ ...codellama7b, architectures: ["MistralForCausalLM"], sliding_window: null }).architecture)
      .toBe("MistralForCausalLM")
  })

  it("reads llama3, dynamic and yarn scaling", () => {
    const llama3 = parseModelConfig({
      ...codellama7b, max_position_embeddings: 131072,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }
    })
    expect(llama3.ropeScaling).toEqual({ type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 })
    expect(parseModelConfig({ ...codellama7b, rope_scaling: { type: "dynamic", factor: 2 } }).ropeScaling)
      .toEqual({ type: "dynamic", factor: 2, originalMaxPositions: 16384 })
    const yarn = parseModelConfig({ ...codellama7b, rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 4096 } })
    expect(yarn.ropeScaling).toMatchObject({ type: "yarn", factor: 4, betaFast: 32, betaSlow: 1 })
    expect(yarn.ropeScaling.type === "yarn" && yarn.ropeScaling.attentionFactor).toBeCloseTo(0.1 * Math.log(4) + 1, 12)
  })

  it("names the field of anything unsupported or malformed", () => {
    expect(errorOf({ ...codellama7b, architectures: ["GPT2LMHeadModel"] }).field).toBe("architectures")
    expect(errorOf({ ...codellama7b, rope_scaling: { rope_type: "longrope", factor: 2 } }).field).toBe("rope_scaling.rope_type")
    expect(errorOf({ ...codellama7b, rope_scaling: { rope_type: "linear" } }).field).toBe("rope_scaling.factor")
    const { hidden_size: _, ...noHidden } = codellama7b
    expect(errorOf(noHidden).field).toBe("hidden_size")
    expect(errorOf({ ...codellama7b, num_key_value_heads: 5 }).field).toBe("num_key_value_heads")
    expect(errorOf({ ...codellama7b, hidden_act: "gelu" }).field).toBe("hidden_act")
    expect(errorOf({ ...codellama7b, vocab_size: -3 }).field).toBe("vocab_size")
    expect(errorOf({ ...codellama7b, architectures: ["MistralForCausalLM"], sliding_window: 4096 }).field).toBe("sliding_window")
    expect(errorOf([1, 2]).field).toBe("(root)")
    expect(errorOf({ ...codellama7b, rope_scaling: { rope_type: "longrope" } }).message).toContain("longrope")
  })

  it("configToJson round-trips every preset", () => {
    for (const c of Object.values(PRESETS)) expect(parseModelConfig(configToJson(c))).toEqual(c)
  })
})
