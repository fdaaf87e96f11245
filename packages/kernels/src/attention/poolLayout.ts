/**
 * Pool buffers in shards (see TreeAttentionConfig.poolShards): shard s holds
 * KV heads [s·h, (s+1)·h), h = kvHeads/shards, as [block][slot][h][headDim],
 * each shard padded to a multiple of 256 bytes (the storage-binding offset
 * alignment) so it can be bound on its own. Elements are `kvElementBytes(dtype)`
 * bytes each (f16: two to a 32-bit word, see kvStorage.ts).
 */
import { kvElementBytes, type KvDtype } from "./kvStorage.ts"

/** Bytes of one shard holding `tokens` token slots of `shardHeads` heads of `dtype` elements. */
export const shardBytesFor = (tokens: number, shardHeads: number, headDim: number, dtype: KvDtype = "f32"): number =>
  Math.ceil((tokens * shardHeads * headDim * kvElementBytes(dtype)) / 256) * 256

/**
 * Re-lays a pool given as [block][slot][kvHeads][headDim] (one shard) into
 * `shards` shards of a pool of `dtype` (the values as they are: kvPoolData
 * turns them into the pool's bytes); with one shard it is returned as is.
 */
export const shardPool = (pool: Float32Array, kvHeads: number, headDim: number, shards: number, dtype: KvDtype = "f32"): Float32Array => {
  if (shards === 1) return pool
  const h = kvHeads / shards
  const tokens = pool.length / (kvHeads * headDim)
  const stride = shardBytesFor(tokens, h, headDim, dtype) / kvElementBytes(dtype)
  const out = new Float32Array(stride * shards)
  for (let t = 0; t < tokens; t++) {
    for (let head = 0; head < kvHeads; head++) {
      const s = Math.floor(head / h)
      const from = (t * kvHeads + head) * headDim
      out.set(pool.subarray(from, from + headDim), s * stride + (t * h + (head % h)) * headDim)
    }
  }
  return out
}
