import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { checkModelConfig, CONFIG_LIMITS, configToJson, type ParseConfigOptions, parseModelConfig } from "../src/model/config.ts"
import { ModelConfigError } from "../src/model/errors.ts"
import { rawJsonValue } from "../src/model/json.ts"
import { PRESETS } from "../src/model/synthetic.ts"

const codellama7b = {
  architectures: ["LlamaForCausalLM"], hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, rms_norm_eps: 1e-5, rope_theta: 1000000, rope_scaling: null,
  vocab_size: 32016, tie_word_embeddings: false, max_position_embeddings: 16384, bos_token_id: 1, eos_token_id: 2,
  hidden_act: "silu", torch_dtype: "bfloat16"
}

const errorOf = (json: unknown, options?: ParseConfigOptions): ModelConfigError => {
  try {
    parseModelConfig(json, options)
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

/** The error for config.json text `text`, parsed as the loader does. */
const textError = (text: string): string => errorOf(JSON.parse(text), { text }).message

/** codellama7b's config.json text with `raw` written as the value of `field`. */
const withRaw = (field: string, raw: string): string => JSON.stringify({ ...codellama7b, [field]: "@" }).replace("\"@\"", raw)

describe("config.json limits and token ids", () => {
  // one KV head and an explicit head_dim, so each size can move alone
  const base = { ...codellama7b, num_key_value_heads: 1, head_dim: 128 }

  it("refuses each size above its limit, naming the field and the value, and accepts it at the limit", () => {
    for (const [field, limit] of Object.entries(CONFIG_LIMITS)) {
      if (field === "num_key_value_heads") continue
      const over = limit + (field === "head_dim" ? 2 : 1) // head_dim must also be even
      expect(errorOf({ ...base, [field]: over }).message, field).toBe(`config.json: ${field}: ${over} is above the limit of ${limit}`)
      expect(() => parseModelConfig({ ...base, [field]: limit }), field).not.toThrow()
    }
    // KV heads above the limit never divide a head count within it
    expect(errorOf({ ...base, num_key_value_heads: 1025 }).message).toBe("config.json: num_key_value_heads: 1025 does not divide num_attention_heads = 32")
    expect(errorOf({ ...base, num_hidden_layers: 100000000 }).field).toBe("num_hidden_layers")
  })

  it("checks configs built in code the same way", () => {
    for (const c of Object.values(PRESETS)) expect(() => checkModelConfig(c)).not.toThrow()
    const check = (c: object): string => {
      try {
        checkModelConfig({ ...PRESETS.tiny, ...c })
      } catch (e) {
        return String((e as Error).message)
      }
      return "passed"
    }
    expect(check({ numLayers: 100000000 })).toBe("config.json: num_hidden_layers: 100000000 is above the limit of 1024")
    expect(check({ hiddenSize: Number.NaN })).toBe("config.json: hidden_size: must be a positive integer, found NaN")
    expect(check({ numLayers: 2.5 })).toBe("config.json: num_hidden_layers: must be a positive integer, found 2.5")
    expect(check({ numKvHeads: 3 })).toBe("config.json: num_key_value_heads: 3 does not divide num_attention_heads = 4")
    expect(check({ headDim: 15 })).toBe("config.json: head_dim: must be an even integer, found 15")
    expect(check({ vocabSize: 256 })).toBe("config.json: bos_token_id: token id 256 is outside the vocabulary (vocab_size 256)")
    expect(check({ eosTokenIds: [257, -1] })).toBe("config.json: eos_token_id: token id -1 is outside the vocabulary (vocab_size 260)")
  })

  it("refuses BOS and EOS ids outside the vocabulary, naming the field", () => {
    expect(errorOf({ ...codellama7b, eos_token_id: 32016 }).message).toBe("config.json: eos_token_id: token id 32016 is outside the vocabulary (vocab_size 32016)")
    expect(errorOf({ ...codellama7b, eos_token_id: [2, 32015, 40000] }).message)
      .toBe("config.json: eos_token_id: token id 40000 is outside the vocabulary (vocab_size 32016)")
    expect(errorOf({ ...codellama7b, bos_token_id: 99999 }).field).toBe("bos_token_id")
    expect(parseModelConfig({ ...codellama7b, eos_token_id: [2, 32015] }).eosTokenIds).toEqual([2, 32015])
  })

  it("shows a value as written, not as JSON.stringify prints what JSON.parse made of it", () => {
    expect(textError(withRaw("num_hidden_layers", "1e999"))).toBe("config.json: num_hidden_layers: must be a positive integer, found 1e999")
    expect(textError(withRaw("hidden_size", "-1E+400"))).toBe("config.json: hidden_size: must be a positive integer, found -1E+400")
    expect(textError(withRaw("vocab_size", "32016.5"))).toBe("config.json: vocab_size: must be a positive integer, found 32016.5")
    expect(textError(withRaw("vocab_size", "1e20"))).toBe("config.json: vocab_size: must be a positive integer, found 1e20")
    expect(textError(withRaw("rope_theta", "1e999"))).toBe("config.json: rope_theta: must be a positive number, found 1e999")
    expect(textError(withRaw("eos_token_id", "[2,  1e999]"))).toBe("config.json: eos_token_id: must be a token id or a list of them, found [2,  1e999]")
    expect(textError(withRaw("rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 1e999}")))
      .toBe("config.json: rope_scaling.factor: must be a positive number, found 1e999")
    expect(textError(withRaw("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 2, \"attention_factor\": 1e999}")))
      .toBe("config.json: rope_scaling.attention_factor: must be a positive number, found 1e999")
    // the last of repeated keys, and keys written with escapes, as JSON.parse reads them
    expect(textError(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 1e999, "hidden_size": 0.5}`))
      .toBe("config.json: hidden_size: must be a positive integer, found 0.5")
    expect(textError(`{"architectures": ["LlamaForCausalLM"], "hidden_\\u0073ize" : 1E999}`))
      .toBe("config.json: hidden_size: must be a positive integer, found 1E999")
    // without the text, a number still reads as a number
    expect(errorOf(JSON.parse(withRaw("num_hidden_layers", "1e999"))).message).toBe("config.json: num_hidden_layers: must be a positive integer, found Infinity")
  })

  it("adds what the tensors say to an error about a size", () => {
    const tensors = (field: string): string | undefined => (field === "num_hidden_layers" ? "2 layers, model.layers.0 to model.layers.1" : undefined)
    const e = errorOf(JSON.parse(withRaw("num_hidden_layers", "1e999")), { text: withRaw("num_hidden_layers", "1e999"), tensors })
    expect(e).toMatchObject({ field: "num_hidden_layers", tensors: "2 layers, model.layers.0 to model.layers.1" })
    expect(e.message).toBe("config.json: num_hidden_layers: must be a positive integer, found 1e999; tensors: 2 layers, model.layers.0 to model.layers.1")
    expect(errorOf({ ...codellama7b, hidden_act: "gelu" }, { tensors }).tensors).toBeUndefined()
  })
})

describe("rawJsonValue", () => {
  it("finds any value as written, wherever it sits among others", () => {
    fc.assert(fc.property(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 4 }), fc.nat({ max: 4 }),
      (value, others, indent) => {
        const text = JSON.stringify({ ...others, outer: { ...others, target: value } }, null, indent)
        expect(JSON.parse(rawJsonValue(text, ["outer", "target"])!)).toEqual(JSON.parse(JSON.stringify(value)))
        expect(rawJsonValue(text, ["outer", "absent"])).toBeUndefined()
      }))
  })

  it("returns a number literal exactly as written", () => {
    const literal = fc.tuple(fc.constantFrom("", "-"), fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.option(fc.nat()), fc.option(fc.tuple(
      fc.constantFrom("e", "E"), fc.constantFrom("", "+", "-"), fc.nat({ max: 5000 })
    ))).map(([sign, int, frac, exp]) => `${sign}${int}${frac === null ? "" : `.${frac}`}${exp === null ? "" : exp.join("")}`)
    fc.assert(fc.property(literal, fc.constantFrom(" ", "", "\n\t"), (lit, space) => {
      const text = `{${space}"a"${space}:${space}{"b":${space}${lit}${space},"c":[1,{"b":2}]}${space}}`
      expect(rawJsonValue(text, ["a", "b"])).toBe(lit)
    }))
  })

  it("scans deep nesting without recursion", () => {
    const depth = 200000
    const text = `{"deep": ${"[".repeat(depth)}${"]".repeat(depth)}, "x": 1e999}`
    expect(rawJsonValue(text, ["x"])).toBe("1e999")
  })
})
