/**
 * KV append: for each row r with destination (block b_r, slot s_r),
 *   kPool[b_r][s_r][h][i] = k[r][h][i],  vPool[b_r][s_r][h][i] = v[r][h][i]
 * with the paged pools f32 [numBlocks][blockSize][kvHeads][headDim], or — a
 * pool in S shards (see TreeAttentionConfig.poolShards) — into shard
 * ⌊h / (kvHeads/S)⌋, one dispatch per shard bound on its own.
 * Rows whose block is ≥ numBlocks are skipped, so a stale slot entry can never
 * write outside the pool.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"

const WG = 64

const code = wgsl`
struct Params { shardSize: u32, blockSize: u32, numBlocks: u32, rowSize: u32, rowOffset: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> slots: array<vec2u>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> kPool: array<f32>;
@group(0) @binding(6) var<storage, read_write> vPool: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  // shardSize: this shard's heads × headDim; rowOffset: its first head's element in a row
  let r = id / params.shardSize;
  if (r >= count.x) { return; }
  let e = id % params.shardSize;
  let dst = slots[r];
  if (dst.x >= params.numBlocks || dst.y >= params.blockSize) { return; }
  let at = (dst.x * params.blockSize + dst.y) * params.shardSize + e;
  let src = r * params.rowSize + params.rowOffset + e;
  kPool[at] = k[src];
  vPool[at] = v[src];
}
`

export interface KvAppendBinding {
  /** u32 pairs [rows][2]: (block, slot) */
  readonly slots: GPUBuffer
  /** f32 [rows][kvHeads][headDim] */
  readonly k: GPUBuffer
  readonly v: GPUBuffer
  /** f32 [numBlocks][blockSize][kvHeads][headDim] */
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  readonly count: GPUBuffer
  readonly kvHeads: number
  readonly headDim: number
  readonly blockSize: number
  readonly numBlocks: number
  /** shards of the pools (default 1; divides kvHeads): shard s at byte offset s·size/S */
  readonly poolShards?: number
}

export class KvAppendKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<KvAppendKernel> {
    return new KvAppendKernel(device, await sharedComputePipeline(device, "kv-append", code))
  }

  bind(b: KvAppendBinding): BoundKvAppend {
    const shards = b.poolShards ?? 1
    const shardHeads = b.kvHeads / shards
    const shardSize = shardHeads * b.headDim
    const shardBytes = b.kPool.size / shards
    const dispatches = Array.from({ length: shards }, (_, s) => {
      const params = uniformBuffer(this.device, `kv-append-params-${s}`, packParams([
        ["u32", shardSize], ["u32", b.blockSize], ["u32", b.numBlocks], ["u32", b.kvHeads * b.headDim], ["u32", s * shardSize]
      ]))
      const window = (buffer: GPUBuffer) => ({ buffer, offset: s * shardBytes, size: shardBytes })
      const bindGroup = this.device.createBindGroup({
        label: `kv-append-${s}`,
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: params } },
          { binding: 1, resource: { buffer: b.count } },
          { binding: 2, resource: { buffer: b.slots } },
          { binding: 3, resource: { buffer: b.k } },
          { binding: 4, resource: { buffer: b.v } },
          { binding: 5, resource: window(b.kPool) },
          { binding: 6, resource: window(b.vPool) }
        ]
      })
      return { dispatch: { pipeline: this.pipeline, bindGroup }, params }
    })
    return new BoundKvAppend(dispatches, shardSize)
  }
}

export class BoundKvAppend {
  constructor(
    private readonly shards: ReadonlyArray<{ readonly dispatch: BoundDispatch; readonly params: GPUBuffer }>,
    private readonly shardSize: number
  ) {}
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil((rows * this.shardSize) / WG))
    for (const s of this.shards) dispatch(pass, s.dispatch, x, y)
  }
  destroy(): void {
    for (const s of this.shards) s.params.destroy()
  }
}

/** Float64 reference: writes rows of k/v into copies of the pools. */
export const referenceKvAppend = (
  pool: Float64Array,
  rows: ArrayLike<number>,
  slots: ArrayLike<number>,
  rowSize: number,
  blockSize: number
): Float64Array => {
  const out = Float64Array.from(pool)
  const numBlocks = pool.length / (blockSize * rowSize)
  for (let r = 0; r < slots.length / 2; r++) {
    const block = slots[2 * r]!
    const slot = slots[2 * r + 1]!
    if (block >= numBlocks || slot >= blockSize) continue
    for (let e = 0; e < rowSize; e++) out[(block * blockSize + slot) * rowSize + e] = rows[r * rowSize + e]!
  }
  return out
}
