/**
 * The KV cache: one K and one V pool per layer on the GPU, f32
 * [numBlocks][blockSize][kvHeads][headDim], bound to the trie that decides
 * which block holds which token (PrefixTree over a BlockPool).
 */
import { createStorageBuffer, maxStorageBytes } from "@canopy/kernels"
import { BlockPool, type BlockCopy, PrefixTree } from "@canopy/tree-cache"
import type { ModelConfig } from "../model/config.ts"
import type { KvPools } from "../model/forward.ts"

export interface KvCacheOptions {
  readonly blockSize: number
  /** blocks per pool; default: what `memoryBytes` allows */
  readonly numBlocks?: number
  /** total bytes for all pools when numBlocks is not given (default 256 MiB) */
  readonly memoryBytes?: number
}

export class KvCache {
  readonly pool: BlockPool
  readonly tree: PrefixTree
  private destroyed = false

  private constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
    /** bytes of one block in one pool */
    readonly blockBytes: number,
    readonly pools: ReadonlyArray<KvPools>,
    private readonly scratch: GPUBuffer
  ) {
    this.pool = new BlockPool({ numBlocks, blockSize })
    this.tree = new PrefixTree(this.pool)
  }

  static create(device: GPUDevice, config: ModelConfig, options: KvCacheOptions): KvCache {
    const blockBytes = options.blockSize * config.numKvHeads * config.headDim * 4
    const perPool = maxStorageBytes(device)
    const budget = options.memoryBytes ?? 256 * 2 ** 20
    const numBlocks = options.numBlocks ??
      Math.max(1, Math.min(Math.floor(perPool / blockBytes), Math.floor(budget / (2 * config.numLayers * blockBytes))))
    const pools: Array<KvPools> = []
    try {
      for (let l = 0; l < config.numLayers; l++) {
        pools.push({
          k: createStorageBuffer(device, `kv-pool-k-${l}`, numBlocks * blockBytes),
          v: createStorageBuffer(device, `kv-pool-v-${l}`, numBlocks * blockBytes)
        })
      }
    } catch (e) {
      for (const p of pools) {
        p.k.destroy()
        p.v.destroy()
      }
      throw e
    }
    const scratch = createStorageBuffer(device, "kv-copy-scratch", blockBytes)
    return new KvCache(options.blockSize, numBlocks, blockBytes, pools, scratch)
  }

  /**
   * Records the block copies a split asked for, in every layer's K and V pool.
   * Slots [fromSlot, toSlot) of a block are contiguous; WebGPU forbids copying
   * a buffer onto itself, so each goes through a one-block scratch buffer.
   */
  encodeCopies(encoder: GPUCommandEncoder, copies: ReadonlyArray<BlockCopy>): void {
    const slotBytes = this.blockBytes / this.blockSize
    for (const c of copies) {
      const bytes = (c.toSlot - c.fromSlot) * slotBytes
      if (bytes === 0) continue
      const src = c.src * this.blockBytes + c.fromSlot * slotBytes
      const dst = c.dst * this.blockBytes + c.fromSlot * slotBytes
      for (const p of this.pools) {
        for (const pool of [p.k, p.v]) {
          encoder.copyBufferToBuffer(pool, src, this.scratch, 0, bytes)
          encoder.copyBufferToBuffer(this.scratch, 0, pool, dst, bytes)
        }
      }
    }
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.scratch.destroy()
    for (const p of this.pools) {
      p.k.destroy()
      p.v.destroy()
    }
  }
}
