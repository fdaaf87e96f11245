/**
 * Block copy (copy-on-write of a partly filled KV block): for each copy
 * (src, dst, n), pool[dst][s] = pool[src][s] for slots s < n, in both the K and
 * the V pool. A kernel rather than copyBufferToBuffer because WebGPU forbids a
 * buffer-to-itself copy; many copies go in one dispatch (one per y index).
 * Copies must not write a block another copy of the same dispatch reads.
 */
import { createComputePipeline, uploadBuffer, wgsl } from "../gpu/resources.ts"
import { bindAll, createUniform, dispatch, packParams } from "./common.ts"

const WG = 64

const code = wgsl`
struct Params { slotSize: u32, blockSize: u32, numBlocks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> copies: array<vec4u>;
@group(0) @binding(2) var<storage, read_write> kPool: array<f32>;
@group(0) @binding(3) var<storage, read_write> vPool: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32,
        @builtin(num_workgroups) groups: vec3u) {
  let c = copies[wg.y];
  if (c.x >= params.numBlocks || c.y >= params.numBlocks) { return; }
  let n = min(c.z, params.blockSize) * params.slotSize;
  for (var e = wg.x * ${WG}u + li; e < n; e += groups.x * ${WG}u) {
    kPool[c.y * params.blockSize * params.slotSize + e] = kPool[c.x * params.blockSize * params.slotSize + e];
    vPool[c.y * params.blockSize * params.slotSize + e] = vPool[c.x * params.blockSize * params.slotSize + e];
  }
}
`

export interface BlockCopy {
  readonly src: number
  readonly dst: number
  /** slots [0, slots) are copied */
  readonly slots: number
}

export interface BlockCopyPools {
  /** f32 [numBlocks][blockSize][kvHeads][headDim] */
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  readonly kvHeads: number
  readonly headDim: number
  readonly blockSize: number
  readonly numBlocks: number
}

export class BlockCopyKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<BlockCopyKernel> {
    return new BlockCopyKernel(device, await createComputePipeline(device, "block-copy", code))
  }

  /**
   * Encodes the copies into their own compute pass. The small buffers it makes
   * are returned for the caller to destroy once the work is submitted.
   */
  encode(encoder: GPUCommandEncoder, pools: BlockCopyPools, copies: ReadonlyArray<BlockCopy>): ReadonlyArray<GPUBuffer> {
    if (copies.length === 0) return []
    const slotSize = pools.kvHeads * pools.headDim
    const params = createUniform(this.device, "block-copy-params", packParams([
      ["u32", slotSize], ["u32", pools.blockSize], ["u32", pools.numBlocks]
    ]))
    const list = uploadBuffer(this.device, "block-copies", Uint32Array.from(copies.flatMap((c) => [c.src, c.dst, c.slots, 0])))
    const bindGroup = bindAll(this.device, this.pipeline, "block-copy", [params, list, pools.kPool, pools.vPool])
    const pass = encoder.beginComputePass({ label: "block-copy" })
    dispatch(pass, { pipeline: this.pipeline, bindGroup }, Math.min(64, Math.ceil((pools.blockSize * slotSize) / WG)), copies.length)
    pass.end()
    return [params, list]
  }
}

export const referenceBlockCopy = (
  pool: Float64Array,
  copies: ReadonlyArray<BlockCopy>,
  slotSize: number,
  blockSize: number
): Float64Array => {
  const out = Float64Array.from(pool)
  const blockLen = slotSize * blockSize
  for (const c of copies) {
    const n = Math.min(c.slots, blockSize) * slotSize
    for (let e = 0; e < n; e++) out[c.dst * blockLen + e] = pool[c.src * blockLen + e]!
  }
  return out
}
