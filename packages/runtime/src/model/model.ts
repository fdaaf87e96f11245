/**
 * One call to get a runnable model: config, GPU weights and tokenizer, from a
 * Hugging Face folder or from a synthetic preset (or any config) and a seed.
 */
import type { WeightType } from "@canopy/kernels"
import type { ModelConfig } from "./config.ts"
import { type ModelFolder, openModelFolder } from "./folder.ts"
import { loadSyntheticModel } from "./inMemory.ts"
import { type PresetName, syntheticConfig } from "./presets.ts"
import type { TextTokenizer } from "./tokenizer.ts"
import { loadTokenizer } from "./tokenizerFile.ts"
import { type ModelWeights, uploadFolder } from "./weights.ts"

export type ModelSource =
  | { readonly kind: "folder"; readonly dir: string }
  | {
    readonly kind: "synthetic"
    readonly model: PresetName | ModelConfig
    readonly seed: number
    /** what the weights are rounded to and held as (default "f32"), as in a checkpoint of that dtype */
    readonly dtype?: WeightType
  }

export interface LoadedModel {
  readonly config: ModelConfig
  readonly weights: ModelWeights
  readonly tokenizer: TextTokenizer
}

export interface LoadModelOptions {
  /** while a folder's tensors are read: how many of how many are on the GPU */
  readonly onProgress?: (loaded: number, total: number) => void
}

/** A folder's checks (see openModelFolder) and its tokenizer, checked against the config. */
const openFolderModel = async (dir: string): Promise<{ readonly folder: ModelFolder; readonly tokenizer: TextTokenizer }> => {
  const folder = await openModelFolder(dir, { tokenizer: true })
  try {
    return { folder, tokenizer: await loadTokenizer(dir, { vocabSize: folder.config.vocabSize }) }
  } catch (e) {
    await folder.source.close()
    throw e
  }
}

/**
 * Every check loadModel makes before it touches the GPU: for a folder, its
 * files, config.json, the safetensors headers against it, and the tokenizer;
 * for a synthetic model, its config.
 */
export const checkModelSource = async (source: ModelSource): Promise<void> => {
  if (source.kind === "synthetic") {
    syntheticConfig(source.model)
    return
  }
  const { folder } = await openFolderModel(source.dir)
  await folder.source.close()
}

export const loadModel = async (device: GPUDevice, source: ModelSource, options: LoadModelOptions = {}): Promise<LoadedModel> => {
  if (source.kind === "folder") {
    const { folder, tokenizer } = await openFolderModel(source.dir)
    try {
      const weights = await uploadFolder(device, folder, options.onProgress)
      return { config: folder.config, weights, tokenizer }
    } finally {
      await folder.source.close()
    }
  }
  return loadSyntheticModel(device, source.model, source.seed, source.dtype)
}
