/**
 * Synthetic models: named configs whose weights are generated from a seed
 * (see synthesizeWeights), and saving a host model as a Hugging Face folder.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { configToJson, type ModelConfig } from "./config.ts"
import type { Dtype } from "./dtype.ts"
import { writeSafetensors } from "./safetensors.ts"
import { tensorSpecs } from "./tensors.ts"
import { BYTE_BOS, BYTE_EOS } from "./tokenizer.ts"
import type { HostWeights } from "./weights.ts"

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

/** Writes config.json and the weights (as `dtype`, in `shards` files) into `dir`. */
export const saveModel = async (
  dir: string,
  config: ModelConfig,
  weights: HostWeights,
  options: { readonly dtype?: Dtype; readonly shards?: number } = {}
): Promise<void> => {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, "config.json"), JSON.stringify(configToJson(config), null, 2))
  const tensors = tensorSpecs(config).map((spec) => ({
    name: spec.name,
    shape: spec.shape,
    data: weights.get(spec.name) ?? [],
    dtype: options.dtype ?? "F32"
  }))
  await writeSafetensors(dir, tensors, options.shards ?? 1)
}
