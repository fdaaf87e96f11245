/**
 * Synthetic models: named configs whose weights are generated from a seed
 * (see synthesizeWeights; the configs are in presets.ts, which a browser can
 * load), and saving a host model as a Hugging Face folder.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { configToJson, type ModelConfig } from "./config.ts"
import type { Dtype } from "./dtype.ts"
import { writeSafetensors } from "./safetensors.ts"
import { tensorSpecs } from "./tensors.ts"
import type { HostWeights } from "./weights.ts"

export * from "./presets.ts"

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
