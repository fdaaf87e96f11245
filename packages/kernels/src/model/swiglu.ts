/**
 * SwiGLU: h[r][j] = silu(g[r][j]) · u[r][j], silu(z) = z / (1 + e^(−z)),
 * reading gate and up from one buffer laid out [rows][rowStride] with gate at
 * column j and up at column upOffset + j. The fused gate/up matmul output is
 * rowStride = 2·inter, upOffset = inter.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { bindAll, dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"

const WG = 64

const code = wgsl`
struct Params { inter: u32, rowStride: u32, upOffset: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> gateUp: array<f32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  let r = id / params.inter;
  if (r >= count.x) { return; }
  let j = id % params.inter;
  let g = gateUp[r * params.rowStride + j];
  let u = gateUp[r * params.rowStride + params.upOffset + j];
  // exp(−g) overflows to +inf for g < −88: g / inf = −0, the correct limit.
  h[id] = g / (1.0 + exp(-g)) * u;
}
`

export interface SwigluBinding {
  readonly gateUp: GPUBuffer
  /** f32 [rows][inter] */
  readonly h: GPUBuffer
  readonly count: GPUBuffer
  readonly inter: number
  /** defaults to 2·inter (fused gate/up) */
  readonly rowStride?: number
  /** defaults to inter */
  readonly upOffset?: number
}

export class SwigluKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<SwigluKernel> {
    return new SwigluKernel(device, await sharedComputePipeline(device, "swiglu", code))
  }

  bind(b: SwigluBinding): BoundSwiglu {
    const params = uniformBuffer(this.device, "swiglu-params", packParams([
      ["u32", b.inter], ["u32", b.rowStride ?? 2 * b.inter], ["u32", b.upOffset ?? b.inter]
    ]))
    const bindGroup = bindAll(this.device, this.pipeline, "swiglu", [params, b.count, b.gateUp, b.h])
    return new BoundSwiglu({ pipeline: this.pipeline, bindGroup }, params, b.inter)
  }
}

export class BoundSwiglu {
  constructor(private readonly d: BoundDispatch, private readonly params: GPUBuffer, private readonly inter: number) {}
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil((rows * this.inter) / WG))
    dispatch(pass, this.d, x, y)
  }
  destroy(): void {
    this.params.destroy()
  }
}

export const silu = (z: number): number => z / (1 + Math.exp(-z))

export const referenceSwiglu = (
  gateUp: ArrayLike<number>,
  rows: number,
  inter: number,
  rowStride = 2 * inter,
  upOffset = inter
): Float64Array => {
  const h = new Float64Array(rows * inter)
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < inter; j++) {
      h[r * inter + j] = silu(gateUp[r * rowStride + j]!) * gateUp[r * rowStride + upOffset + j]!
    }
  }
  return h
}
