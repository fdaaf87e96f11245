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
 *
 * The output is Y, or (`ropeAppend`, on the fused q/k/v projection) RoPE and
 * the KV append done in the epilogue (ropeAppend.wgsl.ts): y is then q
 * [rows][heads][headDim], rotated, and the k and v heads go to the pools at
 * the row's slot. A rotated pair (i, i + d/2) must meet in one invocation,
 * so such a kernel computes the columns of a q or k head in another order:
 * its column 4j + {0, 1, 2, 3} is the head's element 2j, 2j + 1, 2j + d/2,
 * 2j + 1 + d/2 (`wRow` says which W row and bias entry each column reads),
 * and it stores four columns at a time, 4-aligned (`storeQuad`), which are
 * two rotated pairs, or two words of an f16 pool.
 */
import type { KvDtype } from "../attention/kvStorage.ts"
import { wgsl } from "../gpu/resources.ts"
import { poolElement, poolStoresWgsl, ROPE_PARAMS_WGSL, ROPE_TURNS_WGSL } from "./ropeAppend.wgsl.ts"
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
  /** the pools' element type of a rope-append output (see the header); absent: the output is Y */
  readonly ropeAppend?: KvDtype | undefined
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

/** WGSL of a rope-append output: bindings 7–12 (RoPE's parameters, positions, slots, turn table, K and V pools), wRow and finishQuad. */
const ropeAppendOutputWgsl = (dtype: KvDtype): string => wgsl`${ROPE_PARAMS_WGSL}
@group(0) @binding(7) var<uniform> rope: RopeParams;
@group(0) @binding(8) var<storage, read> positions: array<u32>;
@group(0) @binding(9) var<storage, read> slots: array<vec2u>;
@group(0) @binding(10) var<storage, read> turnTable: array<vec4f>;
@group(0) @binding(11) var<storage, read_write> kPool: array<${poolElement(dtype)}>;
@group(0) @binding(12) var<storage, read_write> vPool: array<${poolElement(dtype)}>;
${poolStoresWgsl(dtype)}
${ROPE_TURNS_WGSL}

// The W row (and bias entry) of column o: in a q or k head, column 4j + {0, 1, 2, 3} is element 2j, 2j + 1, 2j + d/2, 2j + 1 + d/2.
fn wRow(o: u32) -> u32 {
  let d = rope.headDim;
  if (o >= (rope.heads + rope.kvHeads) * d) { return o; }
  let e = o % d;
  return o - e + e / 4u * 2u + (e & 1u) + select(0u, d / 2u, (e & 2u) != 0u);
}

// Columns c … c + 3 (c a multiple of 4) of row r, scaled dot products: q rotated into y, k rotated and v into the pools.
fn storeQuad(r: u32, c: u32, dots: vec4f) {
  var v = dots;
  if (params.hasBias != 0u) { v += vec4f(bias[wRow(c)], bias[wRow(c + 1u)], bias[wRow(c + 2u)], bias[wRow(c + 3u)]); }
  let d = rope.headDim;
  let head = c / d;
  let e = c % d;
  let kvHead = head - rope.heads;
  let dst = slots[r];
  let cell = ((dst.x * rope.blockSize + dst.y) * rope.kvHeads) * d;
  let writes = dst.x < rope.numBlocks && dst.y < rope.blockSize;
  if (head >= rope.heads + rope.kvHeads) {
    if (writes) {
      let at = cell + (kvHead - rope.kvHeads) * d + e;
      store_vPool(at, v.x, v.y);
      store_vPool(at + 2u, v.z, v.w);
    }
    return;
  }
  let i = e / 2u;
  let half = d / 2u;
  let p = positions[r];
  let a = rotatePair(v.x, v.z, turnsAt(p, i));
  let b = rotatePair(v.y, v.w, turnsAt(p, i + 1u));
  if (head < rope.heads) {
    let at = (r * rope.heads + head) * d + i;
    y[at] = a.x;
    y[at + 1u] = b.x;
    y[at + half] = a.y;
    y[at + half + 1u] = b.y;
  } else if (writes) {
    let at = cell + kvHead * d + i;
    store_kPool(at, a.x, b.x);
    store_kPool(at + half, a.y, b.y);
  }
}
`

/**
 * Bindings 0–5 (params, row count, x, w, bias, y; 6: γ for rmsnorm; 7–12 for
 * a rope-append output), `loads()`, `input`, `normed`, `squares`,
 * `rowScale`, `finish(r, o, v)`, which adds bias and the accumulated Y to an
 * already scaled dot product and stores it, and `wRow(o)`, the W row of
 * column o (o itself where the output is Y).
 */
export const matmulHeader = ({ weights, input, width, subgroups = false, ropeAppend }: MatmulModule): string => {
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

${ropeAppend === undefined ? "fn wRow(o: u32) -> u32 { return o; }" : ropeAppendOutputWgsl(ropeAppend)}

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

/**
 * WGSL storing columns c … c + 3 of row r (c a multiple of 4; `values`
 * their scaled dot products) where `rowOk`: each through finish, within
 * outDim, or for a rope-append output the four through storeQuad (its outDim
 * is a multiple of 4).
 */
export const storeColumns = (module: MatmulModule, r: string, c: string, values: ReadonlyArray<string>, rowOk: string): string =>
  module.ropeAppend === undefined
    ? values.map((v, j) => `if (${rowOk} && ${c} + ${j}u < params.outDim) { finish(${r}, ${c} + ${j}u, ${v}); }`).join(" ")
    : `if (${rowOk} && ${c} < params.outDim) { storeQuad(${r}, ${c}, vec4f(${values.join(", ")})); }`
