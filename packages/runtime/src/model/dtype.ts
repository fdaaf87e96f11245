/**
 * The floating-point storage types of checkpoint tensors and their conversion
 * to and from f32 (round to nearest, ties to even, as PyTorch does).
 */
export type Dtype = "F32" | "F16" | "BF16"
export const DTYPES: ReadonlyArray<Dtype> = ["F32", "F16", "BF16"]
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = { F32: 4, F16: 2, BF16: 2 }

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

export const f16ToF32 = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

export const f32ToF16 = (value: number): number => {
  f32[0] = value
  const x = u32[0]!
  const sign = (x >>> 16) & 0x8000
  const exponent = (x >>> 23) & 0xff
  const mantissa = x & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  const e = exponent - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    // Subnormal: shift the mantissa (with its implicit 1) and round to nearest even.
    const m = mantissa | 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = m & ((1 << shift) - 1)
    let h = m >>> shift
    if (rest > half || (rest === half && (h & 1) === 1)) h++
    return sign | h
  }
  let h = (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++
  return sign | h
}

// bf16 conversions are shared with the kernels, which hold bf16 weights on the GPU.
export { bf16ToF32, f32ToBf16 } from "@canopy/kernels"
import { bf16ToF32, f32ToBf16 } from "@canopy/kernels"

/** Decodes little-endian `bytes` of `dtype` into f32. */
export const decodeToF32 = (dtype: Dtype, bytes: Uint8Array): Float32Array => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = bytes.byteLength / DTYPE_BYTES[dtype]
  const out = new Float32Array(n)
  if (dtype === "F32") for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true)
  else if (dtype === "F16") for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true))
  else for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true))
  return out
}

/** Encodes f32 values as little-endian `dtype` bytes. */
export const encodeFromF32 = (dtype: Dtype, values: ArrayLike<number>): Uint8Array => {
  const out = new Uint8Array(values.length * DTYPE_BYTES[dtype])
  const view = new DataView(out.buffer)
  if (dtype === "F32") for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true)
  else if (dtype === "F16") for (let i = 0; i < values.length; i++) view.setUint16(2 * i, f32ToF16(values[i]!), true)
  else for (let i = 0; i < values.length; i++) view.setUint16(2 * i, f32ToBf16(values[i]!), true)
  return out
}
