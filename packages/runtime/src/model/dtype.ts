/**
 * The floating-point storage types of checkpoint tensors, the weight type each
 * is held as on the GPU, and conversion to and from f32 (round to nearest,
 * ties to even, as PyTorch does). The bit conversions are the kernels' own, so
 * the CPU and the GPU round alike.
 */
import { bf16ToF32, f16BitsToF32, f32ToBf16, f32ToF16Bits, type WeightType } from "@canopy/kernels"

export type Dtype = "F32" | "F16" | "BF16"
export const DTYPES: ReadonlyArray<Dtype> = ["F32", "F16", "BF16"]
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = { F32: 4, F16: 2, BF16: 2 }

/** The GPU weight type that holds a tensor of `dtype` as it is stored. */
export const weightTypeOfDtype = (dtype: Dtype): WeightType => (dtype === "F32" ? "f32" : dtype === "F16" ? "f16" : "bf16")

export const dtypeOfWeightType = (type: WeightType): Dtype => (type === "f32" ? "F32" : type === "f16" ? "F16" : "BF16")

export const f16ToF32 = f16BitsToF32
export const f32ToF16 = f32ToF16Bits
export { bf16ToF32, f32ToBf16 }

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
