/**
 * RMSNorm: y[r][j] = x[r][j] / sqrt(mean_j(x[r][j]²) + eps) * w[j].
 * One workgroup per row; the sum of squares is reduced in workgroup memory in
 * a fixed order, so a row's result does not depend on the rest of the batch.
 * The "software" variant (see KernelVariant) gives each row to one invocation,
 * with no barrier, and loads vec4s when dim % 4 = 0.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import {
  bindAll, BoundRowGroups, defaultVariant, type KernelVariant, MAX_GRID, packParams, rowWorkgroupSize
} from "./common.ts"

const code = (wg: number): string => wgsl`
struct Params { dim: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> partial: array<f32, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * ${MAX_GRID}u + wg.x;
  // Uniform control flow: the whole workgroup leaves together.
  if (r >= count.x) { return; }
  let base = r * params.dim;
  var sum = 0.0;
  for (var j = lid.x; j < params.dim; j += ${wg}u) {
    let v = x[base + j];
    sum += v * v;
  }
  partial[lid.x] = sum;
  workgroupBarrier();
  for (var s = ${wg}u / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { partial[lid.x] += partial[lid.x + s]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(params.dim) + params.eps);
  for (var j = lid.x; j < params.dim; j += ${wg}u) {
    y[base + j] = x[base + j] * scale * w[j];
  }
}
`

/** Rows per workgroup of the software variant. */
const SOFTWARE_WG = 4

const softwareCode = (vec: boolean): string => {
  const t = vec ? "vec4f" : "f32"
  return wgsl`
struct Params { dim: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> x: array<${t}>;
@group(0) @binding(3) var<storage, read> w: array<${t}>;
@group(0) @binding(4) var<storage, read_write> y: array<${t}>;

@compute @workgroup_size(${SOFTWARE_WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = (wg.y * ${MAX_GRID}u + wg.x) * ${SOFTWARE_WG}u + li;
  if (r >= count.x) { return; }
  let n = params.dim / ${vec ? 4 : 1}u;
  let base = r * n;
  var sum = ${t}();
  for (var j = 0u; j < n; j++) {
    let v = x[base + j];
    sum += v * v;
  }
  let scale = inverseSqrt(${vec ? "(sum.x + sum.y + sum.z + sum.w)" : "sum"} / f32(params.dim) + params.eps);
  for (var j = 0u; j < n; j++) {
    y[base + j] = x[base + j] * scale * w[j];
  }
}
`
}

export interface RmsNormBinding {
  /** f32 [rows][dim] */
  readonly x: GPUBuffer
  /** f32 [dim] */
  readonly weight: GPUBuffer
  /** f32 [rows][dim]; a different buffer from x */
  readonly y: GPUBuffer
  readonly count: GPUBuffer
  readonly dim: number
  readonly eps: number
}

export class RmsNormKernel {
  private constructor(
    readonly device: GPUDevice,
    readonly variant: KernelVariant,
    /** the pipeline for dim % 4 = 0 and the one for other dims (the same one in the gpu variant) */
    private readonly vec4: GPUComputePipeline,
    private readonly scalar: GPUComputePipeline
  ) {}

  static async create(device: GPUDevice, variant: KernelVariant = defaultVariant(device)): Promise<RmsNormKernel> {
    if (variant === "software") {
      const [vec4, scalar] = await Promise.all([
        sharedComputePipeline(device, "rmsnorm-software-vec4", softwareCode(true)),
        sharedComputePipeline(device, "rmsnorm-software", softwareCode(false))
      ])
      return new RmsNormKernel(device, variant, vec4, scalar)
    }
    const pipeline = await sharedComputePipeline(device, "rmsnorm", code(rowWorkgroupSize(device)))
    return new RmsNormKernel(device, variant, pipeline, pipeline)
  }

  bind(b: RmsNormBinding): BoundRmsNorm {
    const params = uniformBuffer(this.device, "rmsnorm-params", packParams([["u32", b.dim], ["f32", b.eps]]))
    const pipeline = b.dim % 4 === 0 ? this.vec4 : this.scalar
    const bindGroup = bindAll(this.device, pipeline, "rmsnorm", [params, b.count, b.x, b.weight, b.y])
    const rowsPerGroup = this.variant === "software" ? SOFTWARE_WG : 1
    return new BoundRowGroups({ pipeline, bindGroup }, params, rowsPerGroup)
  }
}

/** RMSNorm bound to its buffers: one dispatch over groups of rows. */
export type BoundRmsNorm = BoundRowGroups

export const referenceRmsNorm = (
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  dim: number,
  eps: number
): Float64Array => {
  const rows = x.length / dim
  const y = new Float64Array(x.length)
  for (let r = 0; r < rows; r++) {
    let sum = 0
    for (let j = 0; j < dim; j++) sum += x[r * dim + j]! ** 2
    const scale = 1 / Math.sqrt(sum / dim + eps)
    for (let j = 0; j < dim; j++) y[r * dim + j] = x[r * dim + j]! * scale * weight[j]!
  }
  return y
}
