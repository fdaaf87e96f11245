/**
 * 16-bit weights made on the GPU from f32 values: dst element first + i =
 * src[i] rounded to f16 or bf16 (to nearest even, on the bits, exactly as
 * packWeights does on the CPU), for i < count, two elements to a u32 word.
 * Elements of dst outside [first, first + count) keep their bits, so two
 * tensors can share a buffer at any element offset (gate and up in gateUp,
 * where an odd count leaves one word holding the end of the one and the start
 * of the other); dispatches that touch the same word must run in order, as
 * the dispatches of one command encoder do.
 */
import { F16_BITS_WGSL } from "../attention/kvStorage.ts"
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { uniformBuffer, wgsl } from "../gpu/resources.ts"
import { bindAll, dispatch, grid2, MAX_GRID, packParams } from "./common.ts"
import { BF16_BITS_WGSL } from "./weightType.ts"

const WG = 256

const code = (type: "f16" | "bf16"): string => wgsl`
struct Params { count: u32, first: u32, words: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
${type === "f16" ? F16_BITS_WGSL : BF16_BITS_WGSL}
fn element(e: u32, old: u32) -> u32 {
  if (e < params.first || e - params.first >= params.count) { return old; }
  return ${type === "f16" ? "f16Bits" : "bf16Bits"}(src[e - params.first]);
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let n = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  if (n >= params.words) { return; }
  let w = params.first / 2u + n;
  let old = dst[w];
  dst[w] = element(2u * w, old & 0xffffu) | (element(2u * w + 1u, old >> 16u) << 16u);
}
`

export class PackWeightsKernel {
  private constructor(readonly device: GPUDevice, readonly type: "f16" | "bf16", private readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice, type: "f16" | "bf16"): Promise<PackWeightsKernel> {
    return new PackWeightsKernel(device, type, await sharedComputePipeline(device, `pack-weights-${type}`, code(type)))
  }

  /**
   * Encodes the packing of `count` f32 values of `src` into `dst` from element
   * `first`; returns the params buffer to destroy after the submit.
   */
  encode(encoder: GPUCommandEncoder, src: GPUBuffer, dst: GPUBuffer, count: number, first = 0): GPUBuffer {
    const words = count === 0 ? 0 : Math.ceil((first + count) / 2) - Math.floor(first / 2)
    const params = uniformBuffer(this.device, "pack-weights-params", packParams([["u32", count], ["u32", first], ["u32", words]]))
    if (words > 0) {
      const pass = encoder.beginComputePass({ label: `pack-weights-${this.type}` })
      const [x, y] = grid2(Math.ceil(words / WG))
      dispatch(pass, { pipeline: this.pipeline, bindGroup: bindAll(this.device, this.pipeline, "pack-weights", [params, src, dst]) }, x, y)
      pass.end()
    }
    return params
  }
}
