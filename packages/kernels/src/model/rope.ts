/**
 * Rotary position embedding, in place on q [rows][heads][d] and k [rows][kvHeads][d],
 * Llama "rotate_half" pairing (i, i + d/2), per-row positions p:
 *
 *   θ_i = p · f_i                      (f_i = inverse frequency of pair i, after scaling)
 *   x'[i]       = (x[i]·cos θ_i − x[i+d/2]·sin θ_i) · m
 *   x'[i + d/2] = (x[i+d/2]·cos θ_i + x[i]·sin θ_i) · m      (m = attention factor, 1 except yarn)
 *
 * Angles reach 10⁵ radians, where an f32 product p·f_i is off by more than the
 * 1e-4 budget and WGSL's sin/cos are only specified on [−π, π]. So the angle is
 * taken in turns, t_i = f_i / 2π, split on the host into parts whose products
 * with the 12-bit halves of p are exact in f32; the fractional turns are then
 * reduced to an octant and sin/cos evaluated by polynomials (error < 1e-8).
 * Dynamic NTK scaling depends on the position itself (base grows once p + 1
 * exceeds the original context), so those rows compute f_i in f32 in the kernel;
 * it is evaluated per token at sequence length p + 1, so a token's rotation
 * never depends on what it is batched with.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { createStorageBuffer, wgsl, uniformBuffer } from "../gpu/resources.ts"
import { bindAll, dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"

export type RopeScaling =
  | { readonly type: "none" }
  | { readonly type: "linear"; readonly factor: number }
  | { readonly type: "dynamic"; readonly factor: number; readonly originalMaxPositions: number }
  | {
    readonly type: "llama3"
    readonly factor: number
    readonly lowFreqFactor: number
    readonly highFreqFactor: number
    readonly originalMaxPositions: number
  }
  | {
    readonly type: "yarn"
    readonly factor: number
    readonly originalMaxPositions: number
    readonly betaFast: number
    readonly betaSlow: number
    /** multiplies cos and sin; derived from factor/mscale when the config leaves it out */
    readonly attentionFactor: number
  }

export interface RopeSpec {
  readonly headDim: number
  readonly theta: number
  readonly scaling: RopeScaling
}

const defaultInverse = (headDim: number, base: number): Float64Array =>
  Float64Array.from({ length: headDim / 2 }, (_, i) => 1 / base ** ((2 * i) / headDim))

/** Yarn's attention factor from factor, mscale and mscale_all_dim (Hugging Face's rule). */
export const yarnAttentionFactor = (factor: number, mscale?: number, mscaleAllDim?: number): number => {
  const get = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1)
  return mscale !== undefined && mscaleAllDim !== undefined ? get(factor, mscale) / get(factor, mscaleAllDim) : get(factor)
}

/** Inverse frequencies f_i for positions below any dynamic threshold, and the attention factor m. */
export const ropeFrequencies = (spec: RopeSpec): { readonly inverse: Float64Array; readonly attentionFactor: number } => {
  const { headDim: d, theta, scaling: s } = spec
  const inv = defaultInverse(d, theta)
  switch (s.type) {
    case "none":
    case "dynamic":
      return { inverse: inv, attentionFactor: 1 }
    case "linear":
      return { inverse: inv.map((f) => f / s.factor), attentionFactor: 1 }
    case "llama3": {
      const lowWavelen = s.originalMaxPositions / s.lowFreqFactor
      const highWavelen = s.originalMaxPositions / s.highFreqFactor
      return {
        inverse: inv.map((f) => {
          const wavelen = (2 * Math.PI) / f
          if (wavelen < highWavelen) return f
          if (wavelen > lowWavelen) return f / s.factor
          const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
          return (1 - smooth) * (f / s.factor) + smooth * f
        }),
        attentionFactor: 1
      }
    }
    case "yarn": {
      const correction = (rotations: number): number =>
        (d * Math.log(s.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(theta))
      const low = Math.max(Math.floor(correction(s.betaFast)), 0)
      let high = Math.min(Math.ceil(correction(s.betaSlow)), d - 1)
      if (low === high) high += 0.001
      return {
        inverse: inv.map((f, i) => {
          const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)))
          const extrapolation = 1 - ramp
          return (f / s.factor) * (1 - extrapolation) + f * extrapolation
        }),
        attentionFactor: s.attentionFactor
      }
    }
  }
}

/** Dynamic NTK's inverse frequencies at sequence length p + 1. */
const dynamicInverse = (d: number, theta: number, factor: number, original: number, position: number): Float64Array => {
  const length = position + 1
  if (length <= original) return defaultInverse(d, theta)
  const base = theta * ((factor * length) / original - (factor - 1)) ** (d / (d - 2))
  return defaultInverse(d, base)
}

const SPLIT = 4096
/** x ∈ [0, 1) as hi + lo with hi a multiple of 1/4096, so (integer < 4096)·hi is exact in f32. */
const split = (x: number): [number, number] => {
  const hi = Math.floor(x * SPLIT) / SPLIT
  return [hi, x - hi]
}

/** vec4 per pair: split(frac(4096·t_i)), split(t_i), with t_i = f_i / 2π in turns per position. */
export const ropeTurnTable = (inverse: Float64Array): Float32Array => {
  const table = new Float32Array(inverse.length * 4)
  inverse.forEach((f, i) => {
    const t = f / (2 * Math.PI)
    const big = SPLIT * t - Math.floor(SPLIT * t)
    table.set([...split(big), ...split(t)], i * 4)
  })
  return table
}

const WG = 64

const code = wgsl`
struct Params {
  heads: u32, kvHeads: u32, headDim: u32, dynamic: u32,
  theta: f32, factor: f32, original: f32, attentionFactor: f32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> turnTable: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;

const TAU: f32 = 6.283185307179586;

// (sin, cos) of 2π·turns for turns ≥ 0: octant reduction, then Taylor series on [−π/4, π/4].
fn sinCosTurns(turns: f32) -> vec2f {
  let quarter = round(turns * 4.0);
  let x = (turns - quarter * 0.25) * TAU;
  let x2 = x * x;
  let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
  let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
  switch (u32(quarter) & 3u) {
    case 0u: { return vec2f(s, c); }
    case 1u: { return vec2f(c, -s); }
    case 2u: { return vec2f(-s, -c); }
    default: { return vec2f(-c, s); }
  }
}

fn turnsAt(p: u32, i: u32) -> f32 {
  let half = params.headDim / 2u;
  if (params.dynamic != 0u && f32(p + 1u) > params.original) {
    let len = f32(p + 1u);
    let d = f32(params.headDim);
    let base = params.theta * pow(params.factor * len / params.original - (params.factor - 1.0), d / (d - 2.0));
    let t = exp2(-f32(2u * i) / d * log2(base)) / TAU;
    return fract(f32(p >> 12u) * fract(4096.0 * t)) + fract(f32(p & 4095u) * t);
  }
  let e = turnTable[i];
  let hi = f32(p >> 12u);
  let lo = f32(p & 4095u);
  return fract(fract(hi * e.x) + hi * e.y + fract(lo * e.z) + lo * e.w);
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  let half = params.headDim / 2u;
  let perRow = (params.heads + params.kvHeads) * half;
  let r = id / perRow;
  if (r >= count.x) { return; }
  let rest = id % perRow;
  let head = rest / half;
  let i = rest % half;
  let sc = sinCosTurns(turnsAt(positions[r], i)) * params.attentionFactor;
  if (head < params.heads) {
    let at = (r * params.heads + head) * params.headDim + i;
    let x1 = q[at];
    let x2 = q[at + half];
    q[at] = x1 * sc.y - x2 * sc.x;
    q[at + half] = x2 * sc.y + x1 * sc.x;
  } else {
    let at = (r * params.kvHeads + head - params.heads) * params.headDim + i;
    let x1 = k[at];
    let x2 = k[at + half];
    k[at] = x1 * sc.y - x2 * sc.x;
    k[at + half] = x2 * sc.y + x1 * sc.x;
  }
}
`

export interface RopeBinding {
  /** u32 [rows] */
  readonly positions: GPUBuffer
  /** f32 [rows][heads][headDim], rotated in place */
  readonly q: GPUBuffer
  /** f32 [rows][kvHeads][headDim], rotated in place */
  readonly k: GPUBuffer
  readonly count: GPUBuffer
  readonly heads: number
  readonly kvHeads: number
  readonly spec: RopeSpec
}

export class RopeKernel {
  private constructor(readonly device: GPUDevice, readonly pipeline: GPUComputePipeline) {}

  static async create(device: GPUDevice): Promise<RopeKernel> {
    return new RopeKernel(device, await sharedComputePipeline(device, "rope", code))
  }

  bind(b: RopeBinding): BoundRope {
    const { spec } = b
    const { inverse, attentionFactor } = ropeFrequencies(spec)
    const dynamic = spec.scaling.type === "dynamic" ? spec.scaling : undefined
    const params = uniformBuffer(this.device, "rope-params", packParams([
      ["u32", b.heads], ["u32", b.kvHeads], ["u32", spec.headDim], ["u32", dynamic ? 1 : 0],
      ["f32", spec.theta], ["f32", dynamic?.factor ?? 1], ["f32", dynamic?.originalMaxPositions ?? 0],
      ["f32", attentionFactor]
    ]))
    const turns = ropeTurnTable(inverse)
    const table = createStorageBuffer(this.device, "rope-turns", turns.byteLength)
    this.device.queue.writeBuffer(table, 0, turns)
    const bindGroup = bindAll(this.device, this.pipeline, "rope", [params, b.count, b.positions, table, b.q, b.k])
    return new BoundRope({ pipeline: this.pipeline, bindGroup }, [params, table], (b.heads + b.kvHeads) * (spec.headDim / 2))
  }
}

export class BoundRope {
  constructor(
    private readonly d: BoundDispatch,
    private readonly owned: ReadonlyArray<GPUBuffer>,
    private readonly perRow: number
  ) {}
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil((rows * this.perRow) / WG))
    dispatch(pass, this.d, x, y)
  }
  destroy(): void {
    for (const b of this.owned) b.destroy()
  }
}

/** Float64 RoPE of one tensor [rows][heads][headDim] (a new array). */
export const referenceRope = (
  x: ArrayLike<number>,
  heads: number,
  positions: ArrayLike<number>,
  spec: RopeSpec
): Float64Array => {
  const d = spec.headDim
  const half = d / 2
  const { inverse, attentionFactor } = ropeFrequencies(spec)
  const out = Float64Array.from(x)
  for (let r = 0; r < positions.length; r++) {
    const p = positions[r]!
    const s = spec.scaling
    const inv = s.type === "dynamic" ? dynamicInverse(d, spec.theta, s.factor, s.originalMaxPositions, p) : inverse
    for (let h = 0; h < heads; h++) {
      const at = (r * heads + h) * d
      for (let i = 0; i < half; i++) {
        const angle = p * inv[i]!
        const c = Math.cos(angle) * attentionFactor
        const sn = Math.sin(angle) * attentionFactor
        const x1 = x[at + i]!
        const x2 = x[at + i + half]!
        out[at + i] = x1 * c - x2 * sn
        out[at + i + half] = x2 * c + x1 * sn
      }
    }
  }
  return out
}
