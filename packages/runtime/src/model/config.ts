/**
 * ModelConfig: the Llama-family hyperparameters, parsed from a Hugging Face
 * config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
 * Anything the runtime cannot run faithfully is a ModelConfigError naming the
 * field, rather than a model that silently computes something else.
 */
import { type RopeScaling, type RopeSpec, yarnAttentionFactor } from "@canopy/kernels"
import { ModelConfigError } from "./errors.ts"
import { abbreviate, rawJsonValue } from "./json.ts"

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

/**
 * The largest size accepted for each field, checked before anything is
 * allocated for it. The largest released checkpoints sit well inside
 * (126 layers, hidden 16384, intermediate 53248, 128 heads, head_dim 256,
 * a 262144-token vocabulary, 10M positions).
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  intermediate_size: 262144,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  vocab_size: 4194304,
  max_position_embeddings: 16777216
} as const

export type SizeField = keyof typeof CONFIG_LIMITS

const SIZES: ReadonlyArray<readonly [SizeField, (c: ModelConfig) => number]> = [
  ["num_hidden_layers", (c) => c.numLayers],
  ["hidden_size", (c) => c.hiddenSize],
  ["intermediate_size", (c) => c.intermediateSize],
  ["num_attention_heads", (c) => c.numHeads],
  ["num_key_value_heads", (c) => c.numKvHeads],
  ["head_dim", (c) => c.headDim],
  ["vocab_size", (c) => c.vocabSize],
  ["max_position_embeddings", (c) => c.maxPositionEmbeddings]
]

/**
 * Checks a config however it was made (parsed, a preset, built in code): every
 * size a positive integer within CONFIG_LIMITS, the head counts compatible,
 * and the BOS and EOS ids inside the vocabulary. Throws ModelConfigError
 * naming the config.json field.
 */
export const checkModelConfig = (c: ModelConfig): void => {
  for (const [field, size] of SIZES) {
    const v = size(c)
    if (!Number.isSafeInteger(v) || v <= 0) throw new ModelConfigError({ field, reason: `must be a positive integer, found ${String(v)}` })
    if (v > CONFIG_LIMITS[field]) throw new ModelConfigError({ field, reason: `${v} is above the limit of ${CONFIG_LIMITS[field]}` })
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelConfigError({ field: "num_key_value_heads", reason: `${c.numKvHeads} does not divide num_attention_heads = ${c.numHeads}` })
  }
  if (c.headDim % 2 !== 0) throw new ModelConfigError({ field: "head_dim", reason: `must be an even integer, found ${c.headDim}` })
  const inVocabulary = (field: string, ids: ReadonlyArray<number>): void => {
    for (const id of ids) {
      if (!Number.isSafeInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new ModelConfigError({ field, reason: `token id ${id} is outside the vocabulary (vocab_size ${c.vocabSize})` })
      }
    }
  }
  inVocabulary("bos_token_id", c.bosTokenId === undefined ? [] : [c.bosTokenId])
  inVocabulary("eos_token_id", c.eosTokenIds)
}

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)

/** How a value at a path of config.json reads in an error. */
type Show = (path: ReadonlyArray<string>, value: unknown) => string

/** An object of config.json, where it sits, and how to quote its values. */
interface Fields {
  readonly json: Json
  readonly path: ReadonlyArray<string>
  readonly show: Show
}

const showFrom = (text: string | undefined): Show => (path, value) => {
  // The text as written: 1e999 parses to Infinity, which JSON.stringify prints as null.
  const raw = text === undefined ? undefined : rawJsonValue(text, path)
  return abbreviate(raw ?? (typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value)))
}

const nameOf = (f: Fields, field: string): string => [...f.path, field].join(".")
const shown = (f: Fields, field: string, value: unknown): string => f.show([...f.path, field], value)

const positiveInt = (f: Fields, field: string, fallback?: number): number => {
  const v = f.json[field] ?? fallback
  if (v === undefined) throw new ModelConfigError({ field: nameOf(f, field), reason: "is required" })
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new ModelConfigError({ field: nameOf(f, field), reason: `must be a positive integer, found ${shown(f, field, v)}` })
  }
  return v
}

const positiveNumber = (f: Fields, field: string, fallback?: number): number => {
  const v = f.json[field] ?? fallback
  if (v === undefined) throw new ModelConfigError({ field: nameOf(f, field), reason: "is required" })
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new ModelConfigError({ field: nameOf(f, field), reason: `must be a positive number, found ${shown(f, field, v)}` })
  }
  return v
}

const bool = (f: Fields, field: string, fallback: boolean): boolean => {
  const v = f.json[field] ?? fallback
  if (typeof v !== "boolean") throw new ModelConfigError({ field: nameOf(f, field), reason: `must be true or false, found ${shown(f, field, v)}` })
  return v
}

const tokenIds = (f: Fields, field: string): ReadonlyArray<number> => {
  const v = f.json[field]
  if (v === undefined || v === null) return []
  const list: ReadonlyArray<unknown> = Array.isArray(v) ? v : [v]
  for (const id of list) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new ModelConfigError({ field: nameOf(f, field), reason: `must be a token id or a list of them, found ${shown(f, field, v)}` })
    }
  }
  return list as ReadonlyArray<number>
}

const ropeScaling = (top: Fields, maxPositions: number): RopeScaling => {
  const raw = top.json["rope_scaling"]
  if (raw === undefined || raw === null) return { type: "none" }
  if (!isObject(raw)) throw new ModelConfigError({ field: "rope_scaling", reason: "must be an object or null" })
  const type = raw["rope_type"] ?? raw["type"]
  const p = "rope_scaling."
  const fields: Fields = { json: raw, path: ["rope_scaling"], show: top.show }
  const factor = (): number => positiveNumber(fields, "factor")
  const original = (fallback: number): number => positiveNumber(fields, "original_max_position_embeddings", fallback)
  switch (type) {
    case "default":
      return { type: "none" }
    case "linear":
      return { type: "linear", factor: factor() }
    case "dynamic":
      return { type: "dynamic", factor: factor(), originalMaxPositions: original(maxPositions) }
    case "llama3": {
      const lowFreqFactor = positiveNumber(fields, "low_freq_factor")
      const highFreqFactor = positiveNumber(fields, "high_freq_factor")
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
      if (given !== undefined && given !== null) positiveNumber(fields, "attention_factor")
      const attentionFactor = typeof given === "number"
        ? given
        : yarnAttentionFactor(f, typeof mscale === "number" ? mscale : undefined, typeof mscaleAllDim === "number" ? mscaleAllDim : undefined)
      return {
        type: "yarn",
        factor: f,
        originalMaxPositions: original(maxPositions),
        betaFast: positiveNumber(fields, "beta_fast", 32),
        betaSlow: positiveNumber(fields, "beta_slow", 1),
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

export interface ParseConfigOptions {
  /** the text the object was parsed from: errors quote values as written there */
  readonly text?: string | undefined
  /** what the tensors hold that bears on a config.json field, to add to an error about it */
  readonly tensors?: ((field: string) => string | undefined) | undefined
}

/**
 * Parses a config.json object and checks it (see checkModelConfig); throws
 * ModelConfigError naming the offending field.
 */
export const parseModelConfig = (json: unknown, options: ParseConfigOptions = {}): ModelConfig => {
  try {
    if (!isObject(json)) throw new ModelConfigError({ field: "(root)", reason: "config.json must hold a JSON object" })
    const config = parseObject({ json, path: [], show: showFrom(options.text) })
    checkModelConfig(config)
    return config
  } catch (e) {
    const tensors = e instanceof ModelConfigError && e.tensors === undefined ? options.tensors?.(e.field) : undefined
    if (tensors === undefined) throw e
    const { field, reason } = e as ModelConfigError
    throw new ModelConfigError({ field, reason, tensors })
  }
}

const parseObject = (f: Fields): ModelConfig => {
  const json = f.json
  const archs = json["architectures"]
  const declared = Array.isArray(archs) ? archs : []
  const architecture = ARCHITECTURES.find((a) => declared.includes(a))
  if (architecture === undefined) {
    throw new ModelConfigError({
      field: "architectures",
      reason: `${shown(f, "architectures", archs)} is not supported (supported: ${ARCHITECTURES.join(", ")})`
    })
  }
  const qwen = architecture === "Qwen2ForCausalLM"
  const hiddenSize = positiveInt(f, "hidden_size")
  const numHeads = positiveInt(f, "num_attention_heads")
  const numKvHeads = positiveInt(f, "num_key_value_heads", numHeads)
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError({ field: "num_key_value_heads", reason: `${numKvHeads} does not divide num_attention_heads = ${numHeads}` })
  }
  const headDim = json["head_dim"] === null ? hiddenSize / numHeads : positiveInt(f, "head_dim", hiddenSize / numHeads)
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelConfigError({ field: "head_dim", reason: `must be an even integer, found ${headDim}` })
  }
  if (json["hidden_act"] !== undefined && json["hidden_act"] !== "silu") {
    throw new ModelConfigError({ field: "hidden_act", reason: `${shown(f, "hidden_act", json["hidden_act"])} is not supported (only silu)` })
  }
  if (bool(f, "mlp_bias", false)) throw new ModelConfigError({ field: "mlp_bias", reason: "MLP biases are not supported" })
  const partial = json["partial_rotary_factor"]
  if (partial !== undefined && partial !== 1) {
    throw new ModelConfigError({ field: "partial_rotary_factor", reason: "only full rotary embeddings (1) are supported" })
  }
  const maxPositionEmbeddings = positiveInt(f, "max_position_embeddings", 2048)
  // Attention here is full causal attention: a window that actually binds would change the model.
  const window = json["sliding_window"]
  const windowOn = qwen ? json["use_sliding_window"] === true : typeof window === "number"
  if (windowOn && typeof window === "number" && window < maxPositionEmbeddings) {
    throw new ModelConfigError({ field: "sliding_window", reason: `sliding-window attention (${window}) is not supported` })
  }
  const bos = tokenIds(f, "bos_token_id")
  return {
    architecture,
    hiddenSize,
    intermediateSize: positiveInt(f, "intermediate_size"),
    numLayers: positiveInt(f, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(f, "rms_norm_eps", 1e-6),
    ropeTheta: positiveNumber(f, "rope_theta", 10000),
    ropeScaling: ropeScaling(f, maxPositionEmbeddings),
    vocabSize: positiveInt(f, "vocab_size"),
    tieWordEmbeddings: bool(f, "tie_word_embeddings", false),
    attentionBias: bool(f, "attention_bias", qwen),
    maxPositionEmbeddings,
    bosTokenId: bos[0],
    eosTokenIds: tokenIds(f, "eos_token_id")
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
