/**
 * Rotary position embedding on the host: the inverse frequencies f_i of each
 * scaling type (Hugging Face's rules), the turn table the GPU rotation reads
 * (ropeAppend.ts, which rotates q and k as it appends K and V), and the
 * float64 reference, Llama's "rotate_half" pairing (i, i + d/2) at position p:
 *
 *   θ_i = p · f_i
 *   x'[i]       = (x[i]·cos θ_i − x[i+d/2]·sin θ_i) · m
 *   x'[i + d/2] = (x[i+d/2]·cos θ_i + x[i]·sin θ_i) · m      (m = attention factor, 1 except yarn)
 */
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
