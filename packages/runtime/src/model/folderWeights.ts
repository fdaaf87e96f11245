/**
 * A model folder's weights read from disk (Node.js): onto the GPU, or into
 * host arrays for the CPU reference.
 */
import type { ModelConfig } from "./config.ts"
import { openModelFolder } from "./folder.ts"
import { tensorSpecs } from "./tensors.ts"
import { type HostWeights, type LoadProgress, type ModelWeights, uploadFolder } from "./weights.ts"

/**
 * Loads config.json and the safetensors of a Hugging Face model folder onto the
 * GPU, matrices in the dtype they are stored in (see uploadFolder). The
 * folder, every header and every shape are checked (see openModelFolder)
 * before any tensor data is read.
 */
export const loadWeights = async (device: GPUDevice, dir: string, onProgress?: LoadProgress, chunkBytes?: number): Promise<ModelWeights> => {
  const folder = await openModelFolder(dir)
  try {
    return await uploadFolder(device, folder, onProgress, chunkBytes)
  } finally {
    await folder.source.close()
  }
}

/** Reads every tensor of a model folder into host arrays (for the CPU reference on small models). */
export const loadHostWeights = async (dir: string): Promise<{ config: ModelConfig; weights: HostWeights }> => {
  const { config, source } = await openModelFolder(dir)
  try {
    const weights = new Map<string, Float32Array>()
    for (const spec of tensorSpecs(config)) weights.set(spec.name, await source.readF32(spec.name))
    return { config, weights }
  } finally {
    await source.close()
  }
}
