/**
 * Residual add, in place: x[r][j] += d[r][j]. The forward pass fuses its
 * residuals into the projections (matmul `accumulate`); this kernel is for
 * callers that produce the update another way.
 */
import { createComputePipeline, wgsl } from "../gpu/resources.ts"
import { bindAll, createUniform, dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"

const WG = 64

const code = wgsl`
struct Params { dim: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  if (id >= count.x * params.dim) { return; }
  x[id] += delta[id];
}
`

export interface ResidualAddBinding {
  /** f32 [rows][dim], updated in place */
  readonly x: GPUBuffer
  /** f32 [rows][dim] */
  readonly delta: GPUBuffer
  readonly count: GPUBuffer
  readonly dim: number
}

export class ResidualAddKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<ResidualAddKernel> {
    return new ResidualAddKernel(device, await createComputePipeline(device, "residual-add", code))
  }

  bind(b: ResidualAddBinding): BoundResidualAdd {
    const params = createUniform(this.device, "residual-params", packParams([["u32", b.dim]]))
    const bindGroup = bindAll(this.device, this.pipeline, "residual-add", [params, b.count, b.delta, b.x])
    return new BoundResidualAdd({ pipeline: this.pipeline, bindGroup }, params, b.dim)
  }
}

export class BoundResidualAdd {
  constructor(private readonly d: BoundDispatch, private readonly params: GPUBuffer, private readonly dim: number) {}
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil((rows * this.dim) / WG))
    dispatch(pass, this.d, x, y)
  }
  destroy(): void {
    this.params.destroy()
  }
}
