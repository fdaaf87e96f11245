/**
 * The attention benchmark's K and V pools: one pair per KV dtype a point
 * runs, each sized and sharded for its own element type, all holding the
 * same random values (rounded to f16 in an f16 pool) so that the dtypes'
 * outputs can be compared as well as timed. The values are drawn on the GPU
 * into rows of f32 and written token by token by the engine's own KV append
 * kernel, a chunk of rows at a time: nothing large crosses the bus.
 */
import {
  createLargeStorageBuffer, createRowCount, createStorageBuffer, FillKernel, KvAppendKernel, kvElementBytes, type KvDtype, markKvPool,
  shardBytesFor
} from "@canopy/kernels"
import type { BenchShape } from "./benchShape.ts"

export interface PoolLayout {
  readonly kvDtype: KvDtype
  /** shards of KV heads, the fewest that keep each within one storage binding */
  readonly shards: number
  /** bytes of one pool buffer */
  readonly bytes: number
}

/** How `tokens` of KV in `kvDtype` are laid out within a `binding`-byte storage binding; a reason where one KV head alone is too large. */
export const benchPoolLayout = (shape: BenchShape, tokens: number, kvDtype: KvDtype, binding: number): PoolLayout | { readonly reason: string } => {
  const { kvHeads, headDim } = shape
  const shards = Array.from({ length: kvHeads }, (_, i) => i + 1)
    .find((s) => kvHeads % s === 0 && shardBytesFor(tokens, kvHeads / s, headDim, kvDtype) <= binding)
  if (shards === undefined) {
    const one = shardBytesFor(tokens, 1, headDim, kvDtype) / 2 ** 30
    return { reason: `one KV head's ${kvDtype} pool (${one.toFixed(2)} GiB) exceeds the device's storage binding (${(binding / 2 ** 30).toFixed(2)} GiB)` }
  }
  const bytes = shards === 1 ? tokens * kvHeads * headDim * kvElementBytes(kvDtype) : shards * shardBytesFor(tokens, kvHeads / shards, headDim, kvDtype)
  return { kvDtype, shards, bytes }
}

export interface BenchPools {
  readonly layout: PoolLayout
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
}

/** Most rows one chunk stages: its k and v rows stay within a binding and a dispatch grid. */
const MAX_CHUNK_ROWS = 1 << 16

export class PoolWriter {
  private constructor(
    private readonly device: GPUDevice,
    private readonly fill: FillKernel,
    private readonly append: ReadonlyMap<KvDtype, KvAppendKernel>
  ) {}

  static async create(device: GPUDevice, kvDtypes: ReadonlyArray<KvDtype>): Promise<PoolWriter> {
    const append = new Map<KvDtype, KvAppendKernel>()
    for (const dtype of kvDtypes) append.set(dtype, await KvAppendKernel.create(device, dtype))
    return new PoolWriter(device, await FillKernel.create(device), append)
  }

  /** A K and a V pool of `layout`, marked with its dtype (so kernels of another dtype refuse them). */
  allocate(layout: PoolLayout): BenchPools {
    const pool = (name: string) => {
      const buffer = createLargeStorageBuffer(this.device, `bench ${name} pool ${layout.kvDtype}`, layout.bytes)
      markKvPool(buffer, layout.kvDtype)
      return buffer
    }
    return { layout, kPool: pool("k"), vPool: pool("v") }
  }

  /** Fills `count` f32 values of `q` (uniform in [−1, 1]). */
  async fillQueries(q: GPUBuffer, count: number): Promise<void> {
    const encoder = this.device.createCommandEncoder()
    const params = this.fill.encode(encoder, q, count, { seed: 7, tensorId: 0, scale: 1 })
    this.device.queue.submit([encoder.finish()])
    params.destroy()
  }

  /**
   * Writes the same values into every token slot of every pool in `targets`
   * (token t at block ⌊t / blockSize⌋, slot t mod blockSize): values
   * uniform in [−1, 1], a chunk of up to `binding`-bounded rows at a time.
   */
  async write(targets: ReadonlyArray<BenchPools>, shape: BenchShape, tokens: number, binding: number): Promise<void> {
    const { kvHeads, headDim, blockSize } = shape
    const rowValues = kvHeads * headDim
    const rows = Math.max(1, Math.min(tokens, MAX_CHUNK_ROWS, Math.floor(binding / (rowValues * 4))))
    const owned: Array<{ destroy(): void }> = []
    const own = <T extends { destroy(): void }>(x: T): T => {
      owned.push(x)
      return x
    }
    try {
      const k = own(createStorageBuffer(this.device, "bench k rows", rows * rowValues * 4))
      const v = own(createStorageBuffer(this.device, "bench v rows", rows * rowValues * 4))
      const slots = own(createStorageBuffer(this.device, "bench slots", rows * 8))
      const count = own(createRowCount(this.device, "bench rows"))
      const numBlocks = Math.ceil(tokens / blockSize)
      const bound = targets.map((t) => own(this.append.get(t.layout.kvDtype)!.bind({
        slots, k, v, count: count.buffer, kPool: t.kPool, vPool: t.vPool, kvHeads, headDim, blockSize, numBlocks, poolShards: t.layout.shards
      })))
      for (let first = 0, chunk = 0; first < tokens; first += rows, chunk++) {
        const n = Math.min(rows, tokens - first)
        this.device.queue.writeBuffer(slots, 0, Uint32Array.from({ length: 2 * n }, (_, i) => {
          const t = first + (i >> 1)
          return i % 2 === 0 ? Math.floor(t / blockSize) : t % blockSize
        }))
        count.set(n)
        const encoder = this.device.createCommandEncoder()
        own(this.fill.encode(encoder, k, n * rowValues, { seed: 7, tensorId: 2 * chunk + 1, scale: 1 }))
        own(this.fill.encode(encoder, v, n * rowValues, { seed: 7, tensorId: 2 * chunk + 2, scale: 1 }))
        const pass = encoder.beginComputePass({ label: "bench kv append" })
        for (const b of bound) b.encode(pass, n)
        pass.end()
        this.device.queue.submit([encoder.finish()])
      }
      await this.device.queue.onSubmittedWorkDone()
    } finally {
      for (const x of owned.reverse()) x.destroy()
    }
  }
}
