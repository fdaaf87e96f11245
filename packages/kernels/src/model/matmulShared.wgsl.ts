/**
 * What every matmul kernel shares: its bindings, the input row it reads
 * (the prologue) and the store of one output (the epilogue),
 *
 *   Y[r][o] = (accumulate ? Y[r][o] : 0) + s_r · Σ_i in(r, i)·W[o][i] + bias[o]
 *
 * with in(r, i) and s_r by input kind:
 *   plain    in = X[r][i],                               s_r = 1
 *   rmsnorm  in = X[r][i]·γ[i],                          s_r = 1/√(mean_i X[r][i]² + eps)
 *   swiglu   in = silu(X[r][i])·X[r][inDim + i],          s_r = 1   (X is [rows][2·inDim], gate then up)
 *
 * Loads go in units of `width` elements (4: vec4f, where inDim % 4 = 0; 1:
 * f32), so `input(r, k)` returns elements width·k … width·k + width − 1 of
 * row r. An rmsnorm kernel sums `squares` of the raw X it loads (the kernel
 * sees every element of its rows anyway) and applies `normed` (the γ
 * factor) before the product; `rowScale` turns the sum into s_r.
 */
import { wgsl } from "../gpu/resources.ts"
import { type WeightStorage, weightArrayWgsl, weightEnableWgsl } from "./weightType.ts"

/** What a matmul reads as its input row: X as it is, RMSNorm(X), or SwiGLU of X's two halves. */
export type MatmulInput = "plain" | "rmsnorm" | "swiglu"

export const MATMUL_INPUTS: ReadonlyArray<MatmulInput> = ["plain", "rmsnorm", "swiglu"]

/** The module-wide choices of one matmul pipeline. */
export interface MatmulModule {
  readonly weights: WeightStorage
  readonly input: MatmulInput
  /** 4: vec4 loads along the inner dimension (inDim % 4 = 0); 1: scalar loads */
  readonly width: 1 | 4
  /** the kernel reduces with subgroup operations (`enable subgroups`) */
  readonly subgroups?: boolean
}

/** The WGSL type of one load: vec4f or f32. */
export const loadType = (width: 1 | 4): string => (width === 4 ? "vec4f" : "f32")

/** WGSL for the sum of a load's components (a vec4's four lanes, a scalar itself). */
export const laneSum = (width: 1 | 4, v: string): string => (width === 4 ? `(${v}.x + ${v}.y + ${v}.z + ${v}.w)` : v)

/** WGSL for Σ a·b over a load's components: dot for vec4, the product for scalars. */
export const dotOf = (width: 1 | 4, a: string, b: string): string => (width === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`)

const inputFn = (input: MatmulInput, t: string): string => {
  switch (input) {
    case "plain":
    case "rmsnorm":
      return `fn input(r: u32, k: u32) -> ${t} { return x[r * loads() + k]; }`
    case "swiglu":
      // exp(−g) overflows to +inf for g < −88: g / inf = −0, the correct limit of silu.
      return `fn input(r: u32, k: u32) -> ${t} {
  let g = x[2u * r * loads() + k];
  let u = x[(2u * r + 1u) * loads() + k];
  return g / (1.0 + exp(-g)) * u;
}`
  }
}

/**
 * Bindings 0–5 (params, row count, x, w, bias, y; 6: γ for rmsnorm), `loads()`,
 * `input`, `normed`, `squares`, `rowScale` and `finish(r, o, v)`, which adds
 * bias and the accumulated Y to an already scaled dot product and stores it.
 */
export const matmulHeader = ({ weights, input, width, subgroups = false }: MatmulModule): string => {
  const t = loadType(width)
  return wgsl`${weightEnableWgsl(weights)}${subgroups ? "enable subgroups;\n" : ""}
struct Params { inDim: u32, outDim: u32, hasBias: u32, accumulate: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> x: array<${t}>;
${weightArrayWgsl(weights, 3, "w", "loadW", width === 4)}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
${input === "rmsnorm" ? `@group(0) @binding(6) var<storage, read> gamma: array<${t}>;` : ""}

// loads per input row (and per W row)
fn loads() -> u32 { return params.inDim / ${width}u; }
${inputFn(input, t)}
fn normed(k: u32, v: ${t}) -> ${t} { return ${input === "rmsnorm" ? "v * gamma[k]" : "v"}; }
fn squares(v: ${t}) -> f32 { return ${dotOf(width, "v", "v")}; }
fn rowScale(sumOfSquares: f32) -> f32 { return inverseSqrt(sumOfSquares / f32(params.inDim) + params.eps); }

fn finish(r: u32, o: u32, dot: f32) {
  var v = dot;
  if (params.hasBias != 0u) { v += bias[o]; }
  let at = r * params.outDim + o;
  if (params.accumulate != 0u) { v += y[at]; }
  y[at] = v;
}
`
}

/** `code` when the input is rmsnorm, nothing otherwise: the sums of squares only an rmsnorm kernel keeps. */
export const ifNorm = (input: MatmulInput, code: string): string => (input === "rmsnorm" ? code : "")

/** WGSL multiplying `dot` by row r's scale (`sum` holding its sum of squares), or `dot` itself without rmsnorm. */
export const scaled = (input: MatmulInput, dot: string, sum: string): string =>
  input === "rmsnorm" ? `(${dot}) * rowScale(${sum})` : dot
