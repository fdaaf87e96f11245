/**
 * An f32 value as two f16 halves, so that f16 matrix units can multiply f32
 * activations with f32-level accuracy: x·s = hi + lo + ε, hi = x·s rounded to
 * 11 significant bits, lo = f16(x·s − hi), |ε| ≤ 2⁻²²·|x·s| (two 11-bit
 * significands), where s is
 * the power of two that brings the row's largest |x| into [2¹⁴, 2¹⁵), so that
 * no half overflows f16 and the lo halves of the row's large elements stay
 * normal. Products of f16 halves with f16 weights are exact in f32, so
 * Σ_i x_i·w_i = (Σ_i hi_i·w_i + Σ_i lo_i·w_i) / s with f32 accumulation errs
 * by about as much as the f32 sum itself (plus 2⁻²² of Σ|x_i·w_i|). s and 1/s
 * are exact powers of two.
 *
 * hi is rounded on the bits (half away from zero at the 13th dropped bit),
 * not as f16(x): a shader compiler may take f32(f16(v)) for v and so make
 * every lo zero (lavapipe's does), which no test of the halves alone shows.
 * f16(hi) is then exact wherever hi is in f16's normal range. WGSL lets a
 * device round lo to either f16 neighbour and flush f16 subnormals to zero
 * (lavapipe does both), so on a device lo may differ from the twin here by one
 * f16 step, and halves below 2⁻¹⁴ (scaled) may be zero: a row then misses at
 * most 2⁻²¹·|x·s| + 2⁻¹⁴ per element, 2⁻²⁸ of its largest element — still far
 * below the f32 sum's own error.
 */
import { f16BitsToF32, f32ToF16Bits } from "../attention/kvStorage.ts"

/** Exponent e of the scale 2^e for a row whose largest magnitude is `max` (0 for an all-zero row). */
export const rowScaleExponent = (max: number): number => {
  if (!(max > 0) || !Number.isFinite(max)) return 0
  // frexp: max = f·2^exp with f in [0.5, 1), so max·2^(15 − exp) is in [2¹⁴, 2¹⁵)
  const exp = Math.floor(Math.log2(max)) + 1
  const fixed = max * 2 ** (15 - exp) >= 2 ** 15 ? exp + 1 : max * 2 ** (15 - exp) < 2 ** 14 ? exp - 1 : exp
  return Math.min(127, Math.max(-126, 15 - fixed))
}

const f16 = (v: number): number => f16BitsToF32(f32ToF16Bits(v))

const word = new Float32Array(1)
const bits = new Uint32Array(word.buffer)

/** `v` (an f32) rounded to 11 significant bits on its bits: the 13 low mantissa bits dropped after adding half of them. */
export const roundTo11Bits = (v: number): number => {
  word[0] = v
  bits[0] = ((bits[0]! + 0x1000) & 0xffffe000) >>> 0
  return word[0]!
}

/** hi and lo of `scaled` (a value already multiplied by its row's scale): hi as f16 holds it, lo rounded to nearest even. */
export const splitF32 = (scaled: number): readonly [number, number] => {
  const v = Math.fround(scaled)
  const hi = roundTo11Bits(v)
  return [f16(hi), f16(Math.fround(v - hi))]
}

/**
 * WGSL: `row_scale_exponent(max)` (the twin of rowScaleExponent) and
 * `split_f32(v)` (vec2<f16>(hi, lo) of an already scaled v). Needs `enable f16`.
 */
export const SPLIT_F32_WGSL = /* wgsl */ `
fn row_scale_exponent(max_abs: f32) -> i32 {
  if (!(max_abs > 0.0) || max_abs > 3.4028234663852886e38) { return 0; }
  return clamp(15 - frexp(max_abs).exp, -126, 127);
}
fn split_f32(v: f32) -> vec2<f16> {
  let hi = bitcast<f32>((bitcast<u32>(v) + 0x1000u) & 0xffffe000u);
  return vec2<f16>(f16(hi), f16(v - hi));
}
`
