/**
 * How many tokens the engine's KV cache holds in a given memory, for a model
 * shape and a KV element type: the arithmetic KvCache.create does before it
 * allocates (a K and a V pool per layer, whole blocks only), without a device.
 */
import { kvElementBytes, type KvDtype } from "@canopy/kernels"
import type { ModelConfig } from "@canopy/runtime"

/** The KV memory the engine takes when none is asked for (KvCache.create): 4 GiB on a GPU, 256 MiB on a software adapter. */
export const DEFAULT_KV_MEMORY = { gpu: 4 * 2 ** 30, software: 256 * 2 ** 20 } as const

/** The engine's default tokens per KV block. */
export const DEFAULT_BLOCK_SIZE = 16

export interface KvCapacity {
  readonly kvDtype: KvDtype
  /** K and V of one token over every layer */
  readonly bytesPerToken: number
  /** blocks in each pool */
  readonly blocks: number
  /** blocks × block size: the tokens the cache holds */
  readonly tokens: number
}

/**
 * Whole blocks of `blockSize` tokens in each of the 2·layers pools that fit
 * `memoryBytes`. On a device the pools may also be capped by its buffer
 * limits (KvCache.create says so); at the default memories these are far off.
 */
export const kvCapacity = (
  model: Pick<ModelConfig, "numLayers" | "numKvHeads" | "headDim">, kvDtype: KvDtype, memoryBytes: number, blockSize = DEFAULT_BLOCK_SIZE
): KvCapacity => {
  const slotBytes = model.numKvHeads * model.headDim * kvElementBytes(kvDtype)
  const blocks = Math.floor(memoryBytes / (2 * model.numLayers * blockSize * slotBytes))
  return { kvDtype, bytesPerToken: 2 * model.numLayers * slotBytes, blocks, tokens: blocks * blockSize }
}
