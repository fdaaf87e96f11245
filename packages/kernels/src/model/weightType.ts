/**
 * How a weight matrix is held on the GPU. The type (`WeightType`) is what the
 * values are, as the checkpoint stores them; the storage (`WeightStorage`) is
 * how a kernel declares and reads them:
 *
 *   "f32"         array<f32> (or array<vec4f>)
 *   "f16-packed"  two f16 to a u32 word (element 2k in the low half, 2k+1 in
 *                 the high half), widened with unpack2x16float — no shader-f16 needed
 *   "f16-native"  array<f16> (or array<vec4<f16>>, `enable f16`), on devices with shader-f16
 *   "bf16"        two bf16 to a u32 word, as f16-packed; a bf16 value is the
 *                 top half of an f32, so one shift or mask widens it exactly
 *
 * The two f16 storages are the same bytes, which are also the bytes of an f16
 * safetensors tensor (and bf16's those of a bf16 one): a checkpoint is copied
 * to the GPU as it is. Every storage widens to f32 exactly, and kernels
 * accumulate in f32, so a kernel on 16-bit weights agrees with the float64
 * reference run on the same rounded values to the f32 tolerance.
 */
import type { GpuCapabilities } from "../gpu/adapters.ts"
import { f32ToF16Bits, f16BitsToF32 } from "../attention/kvStorage.ts"

export type WeightType = "f32" | "f16" | "bf16"
export type WeightStorage = "f32" | "f16-packed" | "f16-native" | "bf16"

export const WEIGHT_TYPES: ReadonlyArray<WeightType> = ["f32", "f16", "bf16"]

/** The storage a kernel reads `type` through on a device with these capabilities: native f16 where it has shader-f16. */
export const weightStorageFor = (type: WeightType, capabilities: Pick<GpuCapabilities, "shaderF16">): WeightStorage =>
  type === "f16" ? (capabilities.shaderF16 ? "f16-native" : "f16-packed") : type

/** Bytes of `elements` weights of `type` on the GPU: a 16-bit array of odd length is padded to a whole word. */
export const weightBytes = (type: WeightType, elements: number): number =>
  type === "f32" ? elements * 4 : Math.ceil(elements / 2) * 4

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** bf16 bits of `value`, rounded to nearest even (a NaN stays a NaN). */
export const f32ToBf16 = (value: number): number => {
  f32[0] = value
  const x = u32[0]!
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

export const bf16ToF32 = (bits: number): number => {
  u32[0] = (bits & 0xffff) << 16
  return f32[0]!
}

/** WGSL `fn bf16Bits(x: f32) -> u32`: the twin of f32ToBf16, on the bits, so every device rounds alike. */
export const BF16_BITS_WGSL = `
fn bf16Bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) | 0x40u) & 0xffffu; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
`

/** The 16 bits `value` is stored as in a 16-bit type (first rounded to f32, then to nearest even). */
const bitsOf = (type: "f16" | "bf16"): ((value: number) => number) => (type === "f16" ? f32ToF16Bits : f32ToBf16)

/** `value` as a weight of `type` holds it. */
export const roundWeight = (type: WeightType, value: number): number =>
  type === "f32" ? Math.fround(value) : type === "f16" ? f16BitsToF32(f32ToF16Bits(value)) : bf16ToF32(f32ToBf16(value))

/** Values as weights of `type` hold them. */
export const roundWeights = (type: WeightType, values: ArrayLike<number>): Float32Array =>
  Float32Array.from(values as ArrayLike<number>, (v) => roundWeight(type, v))

/** Values as a 16-bit type, two to a word (an odd length leaves the last word's high half zero). */
const pack16 = (type: "f16" | "bf16", values: ArrayLike<number>): Uint32Array => {
  const bits = bitsOf(type)
  const out = new Uint32Array(Math.ceil(values.length / 2))
  for (let i = 0; i < values.length; i++) out[i >> 1]! |= bits(values[i]!) << (16 * (i & 1))
  return out
}

/** The GPU bytes of weights of `type` holding `values` (rounded to the type). */
export const packWeights = (type: WeightType, values: ArrayLike<number>): Float32Array | Uint32Array =>
  type === "f32" ? (values instanceof Float32Array ? values : Float32Array.from(values)) : pack16(type, values)

/** `enable` directives a module reading `storage` needs; they must come before every declaration. */
export const weightEnableWgsl = (storage: WeightStorage): string => (storage === "f16-native" ? "enable f16;\n" : "")

/**
 * WGSL declaring the weight array `name` at `binding` and `fn load(i)`, which
 * returns element i as f32 or, with `vec4`, elements 4i..4i+3 as a vec4f
 * (then the array holds a multiple of 4 elements). Put weightEnableWgsl first
 * in the module.
 */
export const weightArrayWgsl = (storage: WeightStorage, binding: number, name: string, load: string, vec4: boolean): string => {
  const decl = (element: string) => `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${element}>;`
  switch (storage) {
    case "f32":
      return vec4
        ? `${decl("vec4f")}\nfn ${load}(i: u32) -> vec4f { return ${name}[i]; }`
        : `${decl("f32")}\nfn ${load}(i: u32) -> f32 { return ${name}[i]; }`
    case "f16-native":
      return vec4
        ? `${decl("vec4<f16>")}\nfn ${load}(i: u32) -> vec4f { return vec4f(${name}[i]); }`
        : `${decl("f16")}\nfn ${load}(i: u32) -> f32 { return f32(${name}[i]); }`
    case "f16-packed":
      return vec4
        ? `${decl("vec2u")}
fn ${load}(i: u32) -> vec4f {
  let p = ${name}[i];
  return vec4f(unpack2x16float(p.x), unpack2x16float(p.y));
}`
        : `${decl("u32")}
fn ${load}(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`
    case "bf16":
      return vec4
        ? `${decl("vec2u")}
fn ${load}(i: u32) -> vec4f {
  let p = ${name}[i];
  return vec4f(bitcast<f32>(p.x << 16u), bitcast<f32>(p.x & 0xffff0000u), bitcast<f32>(p.y << 16u), bitcast<f32>(p.y & 0xffff0000u));
}`
        : `${decl("u32")}
fn ${load}(i: u32) -> f32 {
  let word = ${name}[i >> 1u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}`
  }
}
