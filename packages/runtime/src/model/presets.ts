/**
 * The synthetic models' configs by name. Platform-neutral (no Node module):
 * a browser page builds the same models.
 */
import { checkModelConfig, type ModelConfig } from "./config.ts"
import { ModelConfigError } from "./errors.ts"
import { BYTE_BOS, BYTE_EOS } from "./tokenizer.ts"

const codellama = (hidden: number, layers: number, heads: number, inter: number): ModelConfig => ({
  architecture: "LlamaForCausalLM",
  hiddenSize: hidden,
  intermediateSize: inter,
  numLayers: layers,
  numHeads: heads,
  numKvHeads: heads,
  headDim: hidden / heads,
  rmsNormEps: 1e-5,
  ropeTheta: 1_000_000,
  ropeScaling: { type: "none" },
  vocabSize: 32016,
  tieWordEmbeddings: false,
  attentionBias: false,
  maxPositionEmbeddings: 16384,
  bosTokenId: 1,
  eosTokenIds: [2]
})

export const PRESETS = {
  /** Runs in seconds on a software adapter; byte-level vocabulary (258 used of 260). */
  tiny: {
    architecture: "LlamaForCausalLM",
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: { type: "none" },
    vocabSize: 260,
    tieWordEmbeddings: false,
    attentionBias: false,
    maxPositionEmbeddings: 4096,
    bosTokenId: BYTE_BOS,
    eosTokenIds: [BYTE_EOS]
  },
  "codellama-7b": codellama(4096, 32, 32, 11008),
  "codellama-13b": codellama(5120, 40, 40, 13824)
} as const satisfies Record<string, ModelConfig>

export type PresetName = keyof typeof PRESETS
export const PRESET_NAMES = Object.keys(PRESETS) as ReadonlyArray<PresetName>

export const isPresetName = (name: string): name is PresetName => Object.hasOwn(PRESETS, name)

/** The config of a preset (by name) or of a config built in code, checked like a parsed one. */
export const syntheticConfig = (model: PresetName | ModelConfig): ModelConfig => {
  if (typeof model === "string" && !isPresetName(model)) {
    throw new ModelConfigError({ field: "preset", reason: `${JSON.stringify(model)} is not a preset (${Object.keys(PRESETS).join(", ")})` })
  }
  const config: ModelConfig = typeof model === "string" ? PRESETS[model] : model
  // A config built in code gets the limits a parsed one does: tensorSpecs allocates per layer.
  checkModelConfig(config)
  return config
}
