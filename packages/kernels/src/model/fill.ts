/**
 * Seeded fill for synthetic weights: out[i] = offset + scale · v_i, with
 * v_i = (2·(h_i >> 16) + 1 − 65536) / 65536 ∈ (−1, 1) and h_i = hash(seed, tensorId, 0, i).
 * Values are generated on the GPU, so a 13B-parameter model needs no upload, and
 * `referenceFill` reproduces them bit for bit on the CPU: v has 16 significant
 * bits and scale is rounded to 8, so scale·v is exact in f32 and the result is
 * the same whether or not the compiler fuses the multiply-add.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { bindAll, dispatch, grid2, hash4, MAX_GRID, packParams, PCG_WGSL } from "./common.ts"

const WG = 256

const code = wgsl`
struct Params { seed: u32, tensorId: u32, count: u32, scale: f32, offset: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${PCG_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  if (i >= params.count) { return; }
  let h = hash4(params.seed, params.tensorId, 0u, i);
  let v = f32(i32(h >> 16u) * 2i + 1i - 65536i) / 65536.0;
  out[i] = params.offset + params.scale * v;
}
`

/** scale rounded to 8 significant bits (see the header). */
export const fillScale = (scale: number): number => {
  if (scale === 0 || !Number.isFinite(scale)) return scale
  const step = 2 ** (Math.floor(Math.log2(Math.abs(scale))) - 7)
  return Math.round(scale / step) * step
}

export interface FillSpec {
  readonly seed: number
  readonly tensorId: number
  /** half-width of the uniform distribution */
  readonly scale: number
  /** centre (1 for norm weights, 0 otherwise) */
  readonly offset?: number
}

export class FillKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<FillKernel> {
    return new FillKernel(device, await sharedComputePipeline(device, "fill", code))
  }

  /** Encodes the fill of `count` f32 values of `out`; returns the params buffer to destroy after submit. */
  encode(encoder: GPUCommandEncoder, out: GPUBuffer, count: number, spec: FillSpec): GPUBuffer {
    const params = uniformBuffer(this.device, "fill-params", packParams([
      ["u32", spec.seed], ["u32", spec.tensorId], ["u32", count], ["f32", fillScale(spec.scale)], ["f32", spec.offset ?? 0]
    ]))
    const pass = encoder.beginComputePass({ label: "fill" })
    const [x, y] = grid2(Math.ceil(count / WG))
    dispatch(pass, { pipeline: this.pipeline, bindGroup: bindAll(this.device, this.pipeline, "fill", [params, out]) }, x, y)
    pass.end()
    return params
  }
}

/** The same values on the CPU, rounded as the GPU rounds them (f32). */
export const referenceFill = (count: number, spec: FillSpec): Float32Array => {
  const out = new Float32Array(count)
  const scale = Math.fround(fillScale(spec.scale))
  const offset = Math.fround(spec.offset ?? 0)
  for (let i = 0; i < count; i++) {
    const v = ((hash4(spec.seed, spec.tensorId, 0, i) >>> 16) * 2 + 1 - 65536) / 65536
    out[i] = offset + scale * v
  }
  return out
}
