/**
 * The KV cache: one K and one V pool per layer on the GPU, bound to the trie
 * that decides which block holds which token (PrefixTree over a BlockPool).
 * A pool is [numBlocks][blockSize][kvHeads][headDim] of the cache's kvDtype
 * (f16: 2 bytes an element, two to a 32-bit word; f32: 4); when that is larger
 * than one storage binding allows, it is laid out in S shards of kvHeads/S
 * heads each (see TreeAttentionConfig.poolShards), every shard bound on its own.
 */
import {
  createLargeStorageBuffer, createStorageBuffer, GpuBufferTooLarge, isSoftwareDevice, kvElementBytes, type KvDtype, kvHeadDimProblem,
  markKvPool, maxStorageBytes, shardBytesFor
} from "@canopy/kernels"
import { BlockPool, type BlockCopy, PrefixTree } from "@canopy/tree-cache"
import type { ModelConfig } from "../model/config.ts"
import type { KvPools } from "../model/forward.ts"
import { InvalidEngineOptions, KvCacheOutOfMemory } from "./errors.ts"

/**
 * The KV element type when none is asked for: f16 holds twice the tokens in
 * the same memory and reads half the bytes per attended token; attention
 * still computes in f32, so only the storage of K and V is rounded (the
 * kernels match the float64 reference on the rounded values to 1e-4).
 */
export const DEFAULT_KV_DTYPE: KvDtype = "f16"

export interface KvCacheOptions {
  readonly blockSize: number
  /**
   * Element type of the pools (default DEFAULT_KV_DTYPE). "f16" halves the
   * bytes per token (twice the blocks from the same memory); values are
   * rounded to nearest f16 as they are written and attention computes in f32.
   */
  readonly kvDtype?: KvDtype
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
    readonly kvDtype: KvDtype,
    readonly blockSize: number,
    readonly numBlocks: number,
    /** KV heads per shard × headDim × element bytes: the bytes of one token slot in one shard */
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

  /**
   * Allocates the pools. Sizes are checked against the device's limits first;
   * the allocation itself runs inside an out-of-memory error scope, so a cache
   * the device cannot hold is a typed error (and nothing stays allocated)
   * rather than an invalid buffer found at the first step.
   */
  static async create(device: GPUDevice, config: ModelConfig, options: KvCacheOptions): Promise<KvCache> {
    const { numKvHeads: kvHeads, headDim } = config
    const bs = options.blockSize
    const kvDtype = options.kvDtype ?? DEFAULT_KV_DTYPE
    const bad = (field: string, problem: string): never => {
      throw new InvalidEngineOptions({ field, problem })
    }
    if (kvDtype !== "f32" && kvDtype !== "f16") bad("kvDtype", `must be "f16" or "f32", got ${JSON.stringify(kvDtype)}`)
    const headDimProblem = kvHeadDimProblem(kvDtype, headDim)
    if (headDimProblem !== undefined) bad("kvDtype", `${headDimProblem}; this model's is ${headDim}: use kvDtype "f32"`)
    const elementBytes = kvElementBytes(kvDtype)
    const blockBytes = bs * kvHeads * headDim * elementBytes
    const budget = options.memoryBytes ?? (isSoftwareDevice(device) ? 256 * 2 ** 20 : 4 * 2 ** 30)
    if (!Number.isInteger(bs) || bs < 1 || bs > 1024) bad("blockSize", `must be an integer from 1 to 1024, got ${bs}`)
    if (!Number.isFinite(budget) || budget <= 0) bad("kvMemoryBytes", `must be a positive number of bytes, got ${budget}`)
    if (budget < 2 * config.numLayers * blockBytes) {
      bad("kvMemoryBytes", `${budget} bytes do not hold one block of ${bs} tokens in each of the ${2 * config.numLayers} pools (${2 * config.numLayers * blockBytes} bytes)`)
    }
    const binding = maxStorageBytes(device)
    // the most blocks a pool can hold: one shard per KV head, each within a binding, all within a buffer
    const most = Math.min(
      Math.floor(binding / (bs * headDim * elementBytes)),
      Math.floor(device.limits.maxBufferSize / blockBytes)
    )
    const numBlocks = options.numBlocks ?? Math.max(1, Math.min(most, Math.floor(budget / (2 * config.numLayers * blockBytes))))
    if (!Number.isInteger(numBlocks) || numBlocks < 1 || numBlocks > most) {
      bad("kvBlocks", `must be an integer from 1 to ${most} (what one pool of this model can hold on this device), got ${numBlocks}`)
    }
    const fits = (s: number) => kvHeads % s === 0 && shardBytesFor(numBlocks * bs, kvHeads / s, headDim, kvDtype) <= binding
    const shards = options.shards ?? Array.from({ length: kvHeads }, (_, i) => i + 1).find(fits)
    if (shards === undefined || !fits(shards)) {
      throw new GpuBufferTooLarge({
        label: "KV pool shard",
        askedBytes: shardBytesFor(numBlocks * bs, 1, headDim, kvDtype),
        allowedBytes: binding
      })
    }
    const shardBytes = shards === 1 ? numBlocks * blockBytes : shardBytesFor(numBlocks * bs, kvHeads / shards, headDim, kvDtype)
    const pools: Array<KvPools> = []
    // a multiple of 4 (headDim even for f16), as buffer copies need
    const slotBytes = (kvHeads / shards) * headDim * elementBytes
    let scratch: GPUBuffer | undefined
    const free = () => {
      for (const p of pools) {
        p.k.destroy()
        p.v.destroy()
      }
      scratch?.destroy()
    }
    device.pushErrorScope("validation")
    device.pushErrorScope("out-of-memory")
    try {
      for (let l = 0; l < config.numLayers; l++) {
        const pool = {
          k: createLargeStorageBuffer(device, `kv-pool-k-${l}`, shards * shardBytes),
          v: createLargeStorageBuffer(device, `kv-pool-v-${l}`, shards * shardBytes)
        }
        // kernels built for another dtype refuse these buffers instead of misreading them
        markKvPool(pool.k, kvDtype)
        markKvPool(pool.v, kvDtype)
        pools.push(pool)
      }
      scratch = createStorageBuffer(device, "kv-copy-scratch", bs * slotBytes)
    } catch (e) {
      free()
      await device.popErrorScope()
      await device.popErrorScope()
      throw e
    }
    const oom = await device.popErrorScope()
    const invalid = await device.popErrorScope()
    const error = oom ?? invalid
    if (error !== null) {
      free()
      throw new KvCacheOutOfMemory({ askedBytes: 2 * config.numLayers * shards * shardBytes, layers: config.numLayers, detail: error.message.split("\n")[0]!.trim() })
    }
    return new KvCache(kvDtype, bs, numBlocks, slotBytes, shards, shardBytes, pools, scratch!)
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
