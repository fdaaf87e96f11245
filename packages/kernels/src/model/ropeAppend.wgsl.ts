/**
 * The WGSL of RoPE and the KV append that both of their kernels share: the
 * rope-append kernel (ropeAppend.ts) and the fused q/k/v projection's
 * epilogue (matmulShared.wgsl.ts, the "rope-append" output). Both rotate
 * Llama's "rotate_half" pairs (i, i + d/2) of a head to position p,
 *
 *   x'[i]       = (x[i]·cos θ_i − x[i+d/2]·sin θ_i) · m
 *   x'[i + d/2] = (x[i+d/2]·cos θ_i + x[i]·sin θ_i) · m
 *
 * with the angle taken in turns (see ropeAppend.ts for why and how), and
 * store K and V two consecutive elements at a time (one word of an f16 pool).
 * They read the parameter block `rope` (RopeParams) and the turn table
 * `turnTable`; the stores write `kPool` and `vPool`.
 */
import { F16_BITS_WGSL, type KvDtype } from "../attention/kvStorage.ts"

/** The parameter block (16 words; the host's layout is ropeAppend.ts ropeParams). */
export const ROPE_PARAMS_WGSL = `
struct RopeParams {
  heads: u32, kvHeads: u32, headDim: u32, dynamic: u32,
  theta: f32, factor: f32, original: f32, attentionFactor: f32,
  // the pools' blocks; the dispatch's shard of them: its KV heads and its first one
  blockSize: u32, numBlocks: u32, shardHeads: u32, firstHead: u32,
}`

/** The pools' element type in WGSL: f32, or u32 words of two f16. */
export const poolElement = (dtype: KvDtype): string => (dtype === "f32" ? "f32" : "u32")

/** Stores two consecutive pool elements at element `cell` (even): two f32, or one word of two f16. */
const storeWgsl = (pool: string, dtype: KvDtype): string =>
  dtype === "f32"
    ? `fn store_${pool}(cell: u32, a: f32, b: f32) { ${pool}[cell] = a; ${pool}[cell + 1u] = b; }`
    : `fn store_${pool}(cell: u32, a: f32, b: f32) { ${pool}[cell / 2u] = f16Bits(a) | (f16Bits(b) << 16u); }`

/** store_kPool and store_vPool for pools of `dtype`. */
export const poolStoresWgsl = (dtype: KvDtype): string =>
  `${dtype === "f16" ? F16_BITS_WGSL : ""}\n${storeWgsl("kPool", dtype)}\n${storeWgsl("vPool", dtype)}`

/** sinCosTurns, turnsAt(p, i) (pair i's fractional turns at position p) and rotatePair. */
export const ROPE_TURNS_WGSL = `
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

// The fractional turns of pair i at position p.
fn turnsAt(p: u32, i: u32) -> f32 {
  if (rope.dynamic != 0u && f32(p + 1u) > rope.original) {
    let len = f32(p + 1u);
    let d = f32(rope.headDim);
    let base = rope.theta * pow(rope.factor * len / rope.original - (rope.factor - 1.0), d / (d - 2.0));
    let t = exp2(-f32(2u * i) / d * log2(base)) / TAU;
    return fract(f32(p >> 12u) * fract(4096.0 * t)) + fract(f32(p & 4095u) * t);
  }
  let e = turnTable[i];
  let hi = f32(p >> 12u);
  let lo = f32(p & 4095u);
  return fract(fract(hi * e.x) + hi * e.y + fract(lo * e.z) + lo * e.w);
}

// The pair (x[i], x[i + d/2]) rotated by pair i's turns.
fn rotatePair(lo: f32, hi: f32, turns: f32) -> vec2f {
  let sc = sinCosTurns(turns) * rope.attentionFactor;
  return vec2f(lo * sc.y - hi * sc.x, hi * sc.y + lo * sc.x);
}
`
