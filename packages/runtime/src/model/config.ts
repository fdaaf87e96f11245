/**
 * ModelConfig: the Llama-family hyperparameters, parsed from a Hugging Face
 * config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
 * Anything the runtime cannot run faithfully is a ModelConfigError naming the
 * field, rather than a model that silently computes something else.
 */
import { type RopeScaling, type RopeSpec, yarnAttentionFactor } from "@canopy/kernels"
import { ModelConfigError } from "./errors.ts"

export type Architecture = "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM"
export const ARCHITECTURES: ReadonlyArray<Architecture> = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"]

export interface ModelConfig {
  readonly architecture: Architecture
  readonly hiddenSize: number
  readonly intermediateSize: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly headDim: number
  readonly rmsNormEps: number
  readonly ropeTheta: number
  readonly ropeScaling: RopeScaling
  readonly vocabSize: number
  readonly tieWordEmbeddings: boolean
  /** q/k/v projections carry biases (Qwen2, or attention_bias) */
  readonly attentionBias: boolean
  readonly maxPositionEmbeddings: number
  readonly bosTokenId: number | undefined
  /** every end-of-sequence id (config.json may list several) */
  readonly eosTokenIds: ReadonlyArray<number>
}

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)

const positiveInt = (json: Json, field: string, fallback?: number): number => {
  const v = json[field] ?? fallback
  if (v === undefined) throw new ModelConfigError({ field, reason: "is required" })
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new ModelConfigError({ field, reason: `must be a positive integer, found ${JSON.stringify(v)}` })
  }
  return v
}

const positiveNumber = (json: Json, field: string, fallback?: number, prefix = ""): number => {
  const v = json[field] ?? fallback
  if (v === undefined) throw new ModelConfigError({ field: prefix + field, reason: "is required" })
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new ModelConfigError({ field: prefix + field, reason: `must be a positive number, found ${JSON.stringify(v)}` })
  }
  return v
}

const bool = (json: Json, field: string, fallback: boolean): boolean => {
  const v = json[field] ?? fallback
  if (typeof v !== "boolean") throw new ModelConfigError({ field, reason: `must be true or false, found ${JSON.stringify(v)}` })
  return v
}

const tokenIds = (json: Json, field: string): ReadonlyArray<number> => {
  const v = json[field]
  if (v === undefined || v === null) return []
  const list = Array.isArray(v) ? v : [v]
  for (const id of list) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new ModelConfigError({ field, reason: `must be a token id or a list of them, found ${JSON.stringify(v)}` })
    }
  }
  return list as ReadonlyArray<number>
}

const ropeScaling = (json: Json, maxPositions: number): RopeScaling => {
  const raw = json["rope_scaling"]
  if (raw === undefined || raw === null) return { type: "none" }
  if (!isObject(raw)) throw new ModelConfigError({ field: "rope_scaling", reason: "must be an object or null" })
  const type = raw["rope_type"] ?? raw["type"]
  const p = "rope_scaling."
  const factor = (): number => positiveNumber(raw, "factor", undefined, p)
  const original = (fallback: number): number => positiveNumber(raw, "original_max_position_embeddings", fallback, p)
  switch (type) {
    case "default":
      return { type: "none" }
    case "linear":
      return { type: "linear", factor: factor() }
    case "dynamic":
      return { type: "dynamic", factor: factor(), originalMaxPositions: original(maxPositions) }
    case "llama3": {
      const lowFreqFactor = positiveNumber(raw, "low_freq_factor", undefined, p)
      const highFreqFactor = positiveNumber(raw, "high_freq_factor", undefined, p)
      if (highFreqFactor <= lowFreqFactor) {
        throw new ModelConfigError({ field: `${p}high_freq_factor`, reason: "must exceed low_freq_factor" })
      }
      return { type: "llama3", factor: factor(), lowFreqFactor, highFreqFactor, originalMaxPositions: original(8192) }
    }
    case "yarn": {
      const f = factor()
      const mscale = raw["mscale"]
      const mscaleAllDim = raw["mscale_all_dim"]
      const given = raw["attention_factor"]
      if (given !== undefined && given !== null && (typeof given !== "number" || !(given > 0))) {
        throw new ModelConfigError({ field: `${p}attention_factor`, reason: "must be a positive number" })
      }
      const attentionFactor = typeof given === "number"
        ? given
        : yarnAttentionFactor(f, typeof mscale === "number" ? mscale : undefined, typeof mscaleAllDim === "number" ? mscaleAllDim : undefined)
      return {
        type: "yarn",
        factor: f,
        originalMaxPositions: original(maxPositions),
        betaFast: positiveNumber(raw, "beta_fast", 32, p),
        betaSlow: positiveNumber(raw, "beta_slow", 1, p),
        attentionFactor
      }
    }
    default:
      throw new ModelConfigError({
        field: "rope_scaling.rope_type",
        reason: `${JSON.stringify(type)} is not supported (supported: linear, dynamic, llama3, yarn)`
      })
  }
}

/** Parses a config.json object; throws ModelConfigError naming the offending field. */
export const parseModelConfig = (json: unknown): ModelConfig => {
  if (!isObject(json)) throw new ModelConfigError({ field: "(root)", reason: "config.json must hold a JSON object" })
  const archs = json["architectures"]
  const declared = Array.isArray(archs) ? archs : []
  const architecture = ARCHITECTURES.find((a) => declared.includes(a))
  if (architecture === undefined) {
    throw new ModelConfigError({
      field: "architectures",
      reason: `${JSON.stringify(archs)} is not supported (supported: ${ARCHITECTURES.join(", ")})`
    })
  }
  const qwen = architecture === "Qwen2ForCausalLM"
  const hiddenSize = positiveInt(json, "hidden_size")
  const numHeads = positiveInt(json, "num_attention_heads")
  const numKvHeads = positiveInt(json, "num_key_value_heads", numHeads)
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError({ field: "num_key_value_heads", reason: `${numKvHeads} does not divide num_attention_heads = ${numHeads}` })
  }
  const headDim = json["head_dim"] === null ? hiddenSize / numHeads : positiveInt(json, "head_dim", hiddenSize / numHeads)
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelConfigError({ field: "head_dim", reason: `must be an even integer, found ${headDim}` })
  }
  if (json["hidden_act"] !== undefined && json["hidden_act"] !== "silu") {
    throw new ModelConfigError({ field: "hidden_act", reason: `${JSON.stringify(json["hidden_act"])} is not supported (only silu)` })
  }
  if (bool(json, "mlp_bias", false)) throw new ModelConfigError({ field: "mlp_bias", reason: "MLP biases are not supported" })
  const partial = json["partial_rotary_factor"]
  if (partial !== undefined && partial !== 1) {
    throw new ModelConfigError({ field: "partial_rotary_factor", reason: "only full rotary embeddings (1) are supported" })
  }
  const maxPositionEmbeddings = positiveInt(json, "max_position_embeddings", 2048)
  // Attention here is full causal attention: a window that actually binds would change the model.
  const window = json["sliding_window"]
  const windowOn = qwen ? json["use_sliding_window"] === true : typeof window === "number"
  if (windowOn && typeof window === "number" && window < maxPositionEmbeddings) {
    throw new ModelConfigError({ field: "sliding_window", reason: `sliding-window attention (${window}) is not supported` })
  }
  const bos = tokenIds(json, "bos_token_id")
  return {
    architecture,
    hiddenSize,
    intermediateSize: positiveInt(json, "intermediate_size"),
    numLayers: positiveInt(json, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(json, "rms_norm_eps", 1e-6),
    ropeTheta: positiveNumber(json, "rope_theta", 10000),
    ropeScaling: ropeScaling(json, maxPositionEmbeddings),
    vocabSize: positiveInt(json, "vocab_size"),
    tieWordEmbeddings: bool(json, "tie_word_embeddings", false),
    attentionBias: bool(json, "attention_bias", qwen),
    maxPositionEmbeddings,
    bosTokenId: bos[0],
    eosTokenIds: tokenIds(json, "eos_token_id")
  }
}

export const ropeSpec = (c: ModelConfig): RopeSpec => ({ headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling })

/** A config.json object for `c` (what a saved synthetic model carries). */
export const configToJson = (c: ModelConfig): Record<string, unknown> => {
  const s = c.ropeScaling
  const scaling = s.type === "none" ? null
    : s.type === "linear" ? { rope_type: "linear", factor: s.factor }
    : s.type === "dynamic" ? { rope_type: "dynamic", factor: s.factor, original_max_position_embeddings: s.originalMaxPositions }
    : s.type === "llama3" ? {
      rope_type: "llama3", factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositions
    }
    : {
      rope_type: "yarn", factor: s.factor, original_max_position_embeddings: s.originalMaxPositions,
      beta_fast: s.betaFast, beta_slow: s.betaSlow, attention_factor: s.attentionFactor
    }
  return {
    architectures: [c.architecture],
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: scaling,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    max_position_embeddings: c.maxPositionEmbeddings,
    hidden_act: "silu",
    ...(c.bosTokenId === undefined ? {} : { bos_token_id: c.bosTokenId }),
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds
  }
}
