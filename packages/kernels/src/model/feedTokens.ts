/**
 * Token feed: tokens[r] = sampled[feed[r]] where feed[r] ≠ NO_FEED, for r < rows;
 * other rows (and a source past the bound `sampled` buffer) keep the token the CPU wrote.
 * A decode step's input is the previous step's sampled id: fed on the GPU, the
 * next step can be submitted before the previous one's ids are read back.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl } from "../gpu/resources.ts"
import { bindAll, BoundRowGroups, type BoundDispatch } from "./common.ts"

/** A row whose token the CPU wrote. */
export const NO_FEED = 0xffffffff

const WG = 64

const code = wgsl`
@group(0) @binding(0) var<uniform> count: vec4u;
@group(0) @binding(1) var<storage, read> feed: array<u32>;
@group(0) @binding(2) var<storage, read> sampled: array<u32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let r = gid.y * groups.x * ${WG}u + gid.x;
  if (r >= count.x) { return; }
  let source = feed[r];
  if (source != ${NO_FEED}u && source < arrayLength(&sampled)) { tokens[r] = sampled[source]; }
}
`

export interface FeedBinding {
  /** uniform u32 rows (see RowCount) */
  readonly count: GPUBuffer
  /** u32 [rows]: the row of `sampled` each row's token comes from, or NO_FEED */
  readonly feed: GPUBuffer
  /** u32: the previous step's sampled ids */
  readonly sampled: GPUBuffer
  /** u32 [rows], read and written */
  readonly tokens: GPUBuffer
}

export class FeedTokensKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<FeedTokensKernel> {
    return new FeedTokensKernel(device, await sharedComputePipeline(device, "feed-tokens", code))
  }

  bind(b: FeedBinding): BoundRowGroups {
    const d: BoundDispatch = { pipeline: this.pipeline, bindGroup: bindAll(this.device, this.pipeline, "feed-tokens", [b.count, b.feed, b.sampled, b.tokens]) }
    return new BoundRowGroups(d, undefined, WG)
  }
}

/** The same on the CPU. */
export const referenceFeed = (tokens: ArrayLike<number>, feed: ArrayLike<number>, sampled: ArrayLike<number>): Uint32Array =>
  Uint32Array.from(tokens, (t, r) => (feed[r] !== NO_FEED && feed[r]! < sampled.length ? sampled[feed[r]!]! : t))
