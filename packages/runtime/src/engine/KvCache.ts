/**
 * The KV cache: one K and one V pool per layer on the GPU, bound to the trie
 * that decides which block holds which token (PrefixTree over a BlockPool).
 * A pool is f32 [numBlocks][blockSize][kvHeads][headDim]; when that is larger
 * than one storage binding allows, it is laid out in S shards of kvHeads/S
 * heads each (see TreeAttentionConfig.poolShards), every shard bound on its own.
 */
import {
  createLargeStorageBuffer, createStorageBuffer, GpuBufferTooLarge, isSoftwareDevice, maxStorageBytes, shardBytesFor
} from "@canopy/kernels"
import { BlockPool, type BlockCopy, PrefixTree } from "@canopy/tree-cache"
import type { ModelConfig } from "../model/config.ts"
import type { KvPools } from "../model/forward.ts"

export interface KvCacheOptions {
  readonly blockSize: number
  /** blocks per pool; default: what `memoryBytes` allows */
  readonly numBlocks?: number
  /** total bytes for all pools when numBlocks is not given (default 4 GiB on a GPU, 256 MiB on a software adapter) */
  readonly memoryBytes?: number
  /** shards per pool; default: the fewest that keep each shard within one storage binding */
  readonly shards?: number
}

export class KvCache {
  readonly pool: BlockPool
  readonly tree: PrefixTree
  private destroyed = false

  private constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
    /** KV heads per shard × headDim × 4: the bytes of one token slot in one shard */
    private readonly slotBytes: number,
    readonly shards: number,
    /** bytes of one shard of one pool */
    readonly shardBytes: number,
    readonly pools: ReadonlyArray<KvPools>,
    private readonly scratch: GPUBuffer
  ) {
    this.pool = new BlockPool({ numBlocks, blockSize })
    this.tree = new PrefixTree(this.pool)
  }

  static create(device: GPUDevice, config: ModelConfig, options: KvCacheOptions): KvCache {
    const { numKvHeads: kvHeads, headDim } = config
    const bs = options.blockSize
    const blockBytes = bs * kvHeads * headDim * 4
    const budget = options.memoryBytes ?? (isSoftwareDevice(device) ? 256 * 2 ** 20 : 4 * 2 ** 30)
    const binding = maxStorageBytes(device)
    // the most blocks a pool can hold: one shard per KV head, each within a binding, all within a buffer
    const most = Math.min(
      Math.floor(binding / (bs * headDim * 4)),
      Math.floor(device.limits.maxBufferSize / blockBytes)
    )
    const numBlocks = options.numBlocks ?? Math.max(1, Math.min(most, Math.floor(budget / (2 * config.numLayers * blockBytes))))
    const fits = (s: number) => kvHeads % s === 0 && shardBytesFor(numBlocks * bs, kvHeads / s, headDim) <= binding
    const shards = options.shards ?? Array.from({ length: kvHeads }, (_, i) => i + 1).find(fits)
    if (shards === undefined || !fits(shards)) {
      throw new GpuBufferTooLarge({
        label: "KV pool shard",
        askedBytes: shardBytesFor(numBlocks * bs, 1, headDim),
        allowedBytes: binding
      })
    }
    const shardBytes = shards === 1 ? numBlocks * blockBytes : shardBytesFor(numBlocks * bs, kvHeads / shards, headDim)
    const pools: Array<KvPools> = []
    try {
      for (let l = 0; l < config.numLayers; l++) {
        pools.push({
          k: createLargeStorageBuffer(device, `kv-pool-k-${l}`, shards * shardBytes),
          v: createLargeStorageBuffer(device, `kv-pool-v-${l}`, shards * shardBytes)
        })
      }
    } catch (e) {
      for (const p of pools) {
        p.k.destroy()
        p.v.destroy()
      }
      throw e
    }
    const slotBytes = (kvHeads / shards) * headDim * 4
    const scratch = createStorageBuffer(device, "kv-copy-scratch", bs * slotBytes)
    return new KvCache(bs, numBlocks, slotBytes, shards, shardBytes, pools, scratch)
  }

  /**
   * Records the block copies a split asked for, in every layer's K and V pool.
   * Slots [fromSlot, toSlot) of a block are contiguous in each shard; WebGPU forbids copying
   * a buffer onto itself, so each goes through a one-block scratch buffer.
   */
  encodeCopies(encoder: GPUCommandEncoder, copies: ReadonlyArray<BlockCopy>): void {
    const blockBytes = this.blockSize * this.slotBytes
    for (const c of copies) {
      const bytes = (c.toSlot - c.fromSlot) * this.slotBytes
      if (bytes === 0) continue
      for (let s = 0; s < this.shards; s++) {
        const src = s * this.shardBytes + c.src * blockBytes + c.fromSlot * this.slotBytes
        const dst = s * this.shardBytes + c.dst * blockBytes + c.fromSlot * this.slotBytes
        for (const p of this.pools) {
          for (const pool of [p.k, p.v]) {
            encoder.copyBufferToBuffer(pool, src, this.scratch, 0, bytes)
            encoder.copyBufferToBuffer(this.scratch, 0, pool, dst, bytes)
          }
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
