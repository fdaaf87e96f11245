/**
 * How a weight matrix is held on the GPU: f32, or bf16 packed two to a u32
 * word (element 2k in the low half, 2k+1 in the high half). A bf16 value is
 * the top half of an f32, so a kernel widens it exactly with one shift or
 * mask — no shader-f16 needed — and a bf16 checkpoint keeps its size on the GPU.
 */
export type WeightType = "f32" | "bf16"

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

/** Values as bf16, two to a word. */
export const packBf16 = (values: ArrayLike<number>): Uint32Array => {
  const out = new Uint32Array(Math.ceil(values.length / 2))
  for (let i = 0; i < values.length; i++) out[i >> 1]! |= f32ToBf16(values[i]!) << (16 * (i & 1))
  return out
}

/** Bytes of `elements` weights of `type` on the GPU. */
export const weightBytes = (type: WeightType, elements: number): number =>
  type === "f32" ? elements * 4 : Math.ceil(elements / 2) * 4

/**
 * WGSL declaring the weight array `name` at `binding` and `fn load(i)`, which
 * returns element i as f32 or, with `vec4`, elements 4i..4i+3 as a vec4f.
 */
export const weightArrayWgsl = (type: WeightType, binding: number, name: string, load: string, vec4: boolean): string => {
  if (type === "f32") {
    const element = vec4 ? "vec4f" : "f32"
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${element}>;
fn ${load}(i: u32) -> ${element} { return ${name}[i]; }`
  }
  return vec4
    ? `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec2u>;
fn ${load}(i: u32) -> vec4f {
  let p = ${name}[i];
  return vec4f(bitcast<f32>(p.x << 16u), bitcast<f32>(p.x & 0xffff0000u), bitcast<f32>(p.y << 16u), bitcast<f32>(p.y & 0xffff0000u));
}`
    : `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ${load}(i: u32) -> f32 {
  let word = ${name}[i >> 1u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}`
}
