/**
 * KV append: for each row r with destination (block b_r, slot s_r),
 *   kPool[b_r][s_r][h][i] = round(k[r][h][i]),  vPool[b_r][s_r][h][i] = round(v[r][h][i])
 * with the paged pools [numBlocks][blockSize][kvHeads][headDim] of the
 * kernel's dtype, or — a pool in S shards (see TreeAttentionConfig.poolShards)
 * — into shard ⌊h / (kvHeads/S)⌋, one dispatch per shard bound on its own.
 * round is the identity for f32 pools; for f16 pools it is round to nearest
 * even (f16Bits in kvStorage.ts), two elements written as one u32 word (the
 * bytes every f16 reader, native or packed, expects; headDim even).
 * Rows whose block is ≥ numBlocks are skipped, so a stale slot entry can never
 * write outside the pool.
 */
import { checkKvPool, F16_BITS_WGSL, kvHeadDimProblem, type KvDtype } from "../attention/kvStorage.ts"
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"

const WG = 64

/** The bindings both variants share; the pools hold f32 elements or u32 words of two f16. */
const bindings = (poolElement: "f32" | "u32"): string => `struct Params { shardSize: u32, blockSize: u32, numBlocks: u32, rowSize: u32, rowOffset: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> slots: array<vec2u>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> kPool: array<${poolElement}>;
@group(0) @binding(6) var<storage, read_write> vPool: array<${poolElement}>;
`

/** f32 pools: one invocation per element; shardSize and rowOffset count elements. */
const F32_CODE = wgsl`
${bindings("f32")}
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

/**
 * f16 pools: one invocation per u32 word of the pool, i.e. per pair of
 * elements; shardSize counts words, rowOffset elements. The rounding is done
 * on the bits (not pack2x16float, whose rounding WGSL leaves open), so the
 * words are the same on every device and equal packF16 of the inputs.
 */
const F16_CODE = wgsl`
${bindings("u32")}${F16_BITS_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  let r = id / params.shardSize;
  if (r >= count.x) { return; }
  let w = id % params.shardSize;
  let dst = slots[r];
  if (dst.x >= params.numBlocks || dst.y >= params.blockSize) { return; }
  let at = (dst.x * params.blockSize + dst.y) * params.shardSize + w;
  let src = r * params.rowSize + params.rowOffset + 2u * w;
  kPool[at] = f16Bits(k[src]) | (f16Bits(k[src + 1u]) << 16u);
  vPool[at] = f16Bits(v[src]) | (f16Bits(v[src + 1u]) << 16u);
}
`

export interface KvAppendBinding {
  /** u32 pairs [rows][2]: (block, slot) */
  readonly slots: GPUBuffer
  /** f32 [rows][kvHeads][headDim] */
  readonly k: GPUBuffer
  readonly v: GPUBuffer
  /** [numBlocks][blockSize][kvHeads][headDim] of the kernel's dtype */
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
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline, readonly kvDtype: KvDtype) {}

  /** A kernel writing pools of `kvDtype` (default "f32"); the inputs k and v are f32 either way. */
  static async create(device: GPUDevice, kvDtype: KvDtype = "f32"): Promise<KvAppendKernel> {
    const code = kvDtype === "f32" ? F32_CODE : F16_CODE
    return new KvAppendKernel(device, await sharedComputePipeline(device, kvDtype === "f32" ? "kv-append" : "kv-append-f16", code), kvDtype)
  }

  bind(b: KvAppendBinding): BoundKvAppend {
    const problem = kvHeadDimProblem(this.kvDtype, b.headDim)
    if (problem !== undefined) throw new RangeError(`kv-append: ${problem}`)
    checkKvPool(b.kPool, this.kvDtype, "kv-append")
    checkKvPool(b.vPool, this.kvDtype, "kv-append")
    const shards = b.poolShards ?? 1
    const shardHeads = b.kvHeads / shards
    // elements of one slot in one shard; the f16 kernel counts u32 words, two elements each
    const shardElements = shardHeads * b.headDim
    const shardSize = this.kvDtype === "f32" ? shardElements : shardElements / 2
    const shardBytes = b.kPool.size / shards
    const dispatches = Array.from({ length: shards }, (_, s) => {
      const params = uniformBuffer(this.device, `kv-append-params-${s}`, packParams([
        ["u32", shardSize], ["u32", b.blockSize], ["u32", b.numBlocks], ["u32", b.kvHeads * b.headDim], ["u32", s * shardElements]
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
