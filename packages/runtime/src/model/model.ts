/**
 * One call to get a runnable model: config, GPU weights and tokenizer, from a
 * Hugging Face folder or from a synthetic preset (or any config) and a seed.
 */
import type { ModelConfig } from "./config.ts"
import { ModelConfigError } from "./errors.ts"
import { isPresetName, PRESETS, type PresetName } from "./synthetic.ts"
import { byteTokenizer, loadTokenizer, type TextTokenizer } from "./tokenizer.ts"
import { loadWeights, type ModelWeights, synthesizeWeights } from "./weights.ts"

export type ModelSource =
  | { readonly kind: "folder"; readonly dir: string }
  | { readonly kind: "synthetic"; readonly model: PresetName | ModelConfig; readonly seed: number }

export interface LoadedModel {
  readonly config: ModelConfig
  readonly weights: ModelWeights
  readonly tokenizer: TextTokenizer
}

export interface LoadModelOptions {
  /** while a folder's tensors are read: how many of how many are on the GPU */
  readonly onProgress?: (loaded: number, total: number) => void
}

export const loadModel = async (device: GPUDevice, source: ModelSource, options: LoadModelOptions = {}): Promise<LoadedModel> => {
  if (source.kind === "folder") {
    const tokenizer = await loadTokenizer(source.dir)
    const weights = await loadWeights(device, source.dir, options.onProgress)
    return { config: weights.config, weights, tokenizer }
  }
  const { model } = source
  if (typeof model === "string" && !isPresetName(model)) {
    throw new ModelConfigError({ field: "preset", reason: `${JSON.stringify(model)} is not a preset (${Object.keys(PRESETS).join(", ")})` })
  }
  const config: ModelConfig = typeof model === "string" ? PRESETS[model] : model
  const weights = await synthesizeWeights(device, config, source.seed)
  // Synthetic models speak bytes: ids past the byte tokenizer's decode to nothing.
  return { config, weights, tokenizer: byteTokenizer(config.vocabSize) }
}
