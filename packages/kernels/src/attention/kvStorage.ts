/**
 * How K and V are held in the paged pools. The element type (`KvDtype`) is
 * what the values are rounded to; the storage (`KvStorage`) is how a kernel
 * declares and reads the pool:
 *
 *   "f32"         array<vec4f>, one element per 4 bytes
 *   "f16-packed"  array<vec2u>: two f16 per u32 word (element 2k in the low
 *                 half, 2k+1 in the high half), widened with unpack2x16float
 *                 — needs no shader-f16
 *   "f16-native"  array<vec4<f16>> (`enable f16`), on devices with shader-f16
 *
 * The two f16 storages are the same bytes: a pool written one way reads the
 * other way, so writers and readers agree on the dtype only. Layout in every
 * case: [block][slot][kvHeads][headDim] per shard (poolLayout.ts), headDim
 * even so a word never straddles two heads.
 *
 * Rounding on write (f32 → f16) is to nearest, ties to even, computed on the
 * bits (f16BitsWgsl and its TypeScript twin f32ToF16Bits agree bit for bit):
 * WGSL leaves the rounding of f16 conversions and pack2x16float to the
 * implementation and their result for out-of-range values indeterminate
 * (SwiftShader packs ±1e6 as NaN). Here a value beyond ±65504 becomes ±∞, as
 * IEEE rounding says, so an overflowing key shows up as non-finite logits
 * instead of a silently clamped one.
 */
import type { GpuCapabilities } from "../gpu/adapters.ts"

export type KvDtype = "f32" | "f16"
export type KvStorage = "f32" | "f16-packed" | "f16-native"

export const KV_DTYPES: ReadonlyArray<KvDtype> = ["f32", "f16"]

/** Bytes of one K or V element in a pool. */
export const kvElementBytes = (dtype: KvDtype): number => (dtype === "f32" ? 4 : 2)

export const kvDtypeOf = (storage: KvStorage): KvDtype => (storage === "f32" ? "f32" : "f16")

/** The storage a kernel reads `dtype` through on a device with these capabilities: native f16 where it has shader-f16. */
export const kvStorageFor = (dtype: KvDtype, capabilities: Pick<GpuCapabilities, "shaderF16">): KvStorage =>
  dtype === "f32" ? "f32" : capabilities.shaderF16 ? "f16-native" : "f16-packed"

/** A problem with `headDim` for `dtype`, or undefined. */
export const kvHeadDimProblem = (dtype: KvDtype, headDim: number): string | undefined =>
  dtype === "f16" && headDim % 2 !== 0
    ? `headDim (${headDim}) must be even for an f16 KV cache (two f16 values per 32-bit word)`
    : undefined

/** `enable` directives a module reading `storage` needs; they must come before every declaration. */
export const kvEnableWgsl = (storage: KvStorage): string => (storage === "f16-native" ? "enable f16;\n" : "")

/**
 * Read-only K and V pool bindings and `loadK(i)`, `loadV(i)`: elements
 * 4i..4i+3 of the bound shard as a vec4f (exact: f16 widens to f32 without rounding).
 */
export const kvPoolReadWgsl = (storage: KvStorage, kBinding: number, vBinding: number): string => {
  const decl = (name: string, binding: number, element: string) =>
    `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${element}>;`
  switch (storage) {
    case "f32":
      return `${decl("kPool", kBinding, "vec4f")}
${decl("vPool", vBinding, "vec4f")}
fn loadK(i: u32) -> vec4f { return kPool[i]; }
fn loadV(i: u32) -> vec4f { return vPool[i]; }`
    case "f16-packed":
      return `${decl("kPool", kBinding, "vec2u")}
${decl("vPool", vBinding, "vec2u")}
fn widen4(w: vec2u) -> vec4f { return vec4f(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn loadK(i: u32) -> vec4f { return widen4(kPool[i]); }
fn loadV(i: u32) -> vec4f { return widen4(vPool[i]); }`
    case "f16-native":
      return `${decl("kPool", kBinding, "vec4<f16>")}
${decl("vPool", vBinding, "vec4<f16>")}
fn loadK(i: u32) -> vec4f { return vec4f(kPool[i]); }
fn loadV(i: u32) -> vec4f { return vec4f(vPool[i]); }`
  }
}

/**
 * WGSL `fn f16Bits(x: f32) -> u32`: the binary16 bits of x rounded to nearest
 * even, in the low 16 bits; ±∞ beyond the f16 range, NaN stays NaN, f16
 * subnormals kept. Integer arithmetic on the f32 bits only, so every device
 * gives the same bits (see f32ToF16Bits).
 */
export const F16_BITS_WGSL = `
fn f16Bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | 0x7e00u; }
  // 65520 (halfway from 65504, the largest f16, to 65536) and above round to infinity
  if (a >= 0x477ff000u) { return sign | 0x7c00u; }
  if (a >= 0x38800000u) {
    // normal: rebias the exponent (127 → 15), drop 13 mantissa bits rounding to even; a carry bumps the exponent
    let r = a - 0x38000000u;
    return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
  }
  // at most 2^-25 (half the smallest subnormal, a tie to even) rounds to zero
  if (a <= 0x33000000u) { return sign; }
  // subnormal: the 24-bit significand scaled to units of 2^-24, rounded to even (may round up to the smallest normal)
  let m = (a & 0x7fffffu) | 0x800000u;
  let shift = 126u - (a >> 23u);
  return sign | ((m + (1u << (shift - 1u)) - 1u + ((m >> shift) & 1u)) >> shift);
}
`

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** Binary16 bits of `value` (first rounded to f32), nearest even; the twin of the WGSL f16Bits. */
export const f32ToF16Bits = (value: number): number => {
  f32[0] = value
  const b = u32[0]!
  const sign = (b >>> 16) & 0x8000
  const a = b & 0x7fffffff
  if (a > 0x7f800000) return sign | 0x7e00
  if (a >= 0x477ff000) return sign | 0x7c00
  if (a >= 0x38800000) {
    const r = a - 0x38000000
    return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13)
  }
  if (a <= 0x33000000) return sign
  const m = (a & 0x7fffff) | 0x800000
  const shift = 126 - (a >>> 23)
  return sign | ((m + (1 << (shift - 1)) - 1 + ((m >>> shift) & 1)) >>> shift)
}

/** The value of binary16 bits. */
export const f16BitsToF32 = (bits: number): number => {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >>> 10) & 0x1f
  const mantissa = bits & 0x3ff
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  if (exponent === 0) return sign * mantissa * 2 ** -24
  return sign * (1024 + mantissa) * 2 ** (exponent - 25)
}

/** `value` rounded to the nearest f16 (what an f16 KV cache holds). */
export const roundToF16 = (value: number): number => f16BitsToF32(f32ToF16Bits(value))

/** Values rounded to what a pool of `dtype` holds (f32: Math.fround). */
export const roundKv = (values: ArrayLike<number>, dtype: KvDtype): Float32Array =>
  dtype === "f32" ? Float32Array.from(values) : Float32Array.from(values, roundToF16)

/** Values as f16, two to a word: the bytes of an f16 pool (length must be even). */
export const packF16 = (values: ArrayLike<number>): Uint32Array => {
  if (values.length % 2 !== 0) throw new RangeError(`packF16: an even number of values is needed, got ${values.length}`)
  const out = new Uint32Array(values.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = (f32ToF16Bits(values[2 * i]!) | (f32ToF16Bits(values[2 * i + 1]!) << 16)) >>> 0
  return out
}

/** The values of an f16 pool's words. */
export const unpackF16 = (words: Uint32Array): Float32Array => {
  const out = new Float32Array(words.length * 2)
  for (let i = 0; i < words.length; i++) {
    out[2 * i] = f16BitsToF32(words[i]! & 0xffff)
    out[2 * i + 1] = f16BitsToF32(words[i]! >>> 16)
  }
  return out
}

/** The bytes of a pool of `dtype` holding `values` (f32 as is, f16 packed two to a word). */
export const kvPoolData = (values: Float32Array, dtype: KvDtype): Float32Array | Uint32Array =>
  dtype === "f32" ? values : packF16(values)

/**
 * The dtype each pool buffer was made for, where its creator said so
 * (KvCache does): a kernel bound to a pool of another dtype would read its
 * bytes as garbage, so the append and attention kernels check this.
 */
const poolDtypes = new WeakMap<GPUBuffer, KvDtype>()

export const markKvPool = (buffer: GPUBuffer, dtype: KvDtype): void => void poolDtypes.set(buffer, dtype)

/** Throws when `buffer` was marked as a pool of another dtype than `dtype`. */
export const checkKvPool = (buffer: GPUBuffer, dtype: KvDtype, user: string): void => {
  const marked = poolDtypes.get(buffer)
  if (marked !== undefined && marked !== dtype) {
    throw new RangeError(`${user}: the KV pool "${buffer.label}" holds ${marked} values; this kernel was built for ${dtype}`)
  }
}
