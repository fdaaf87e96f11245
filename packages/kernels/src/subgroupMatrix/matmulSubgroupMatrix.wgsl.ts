/**
 * Matmul on the device's matrix units (chromium-experimental-subgroup-matrix):
 *
 *   Y[r][o] = Σ_i X[r][i]·W[o][i]      W f16 [out][in], Y f32, f32 accumulation
 *
 * X is f16 ("f16" input) or f32 ("split-f32": each row scaled by the power of
 * two 2^e_r of splitF32.ts, split into hi + lo f16 halves, both multiplied,
 * Y = (hi·Wᵀ + lo·Wᵀ)·2^−e_r — f32-level accuracy from f16 products).
 *
 * A workgroup is one subgroup, so every offset and loop bound comes from the
 * workgroup id and uniforms: the matrix builtins need uniform control flow.
 * It owns a tile of rowMatrices·M rows × colMatrices·N columns, as that many
 * result matrices of the device's config (M×N, inner K), and walks the inner
 * dimension either straight from storage ("global" staging) or in slices of
 * kSlice staged through workgroup memory ("workgroup"). Its result matrices
 * and operands are separate variables ("unrolled") or arrays indexed in loops
 * ("arrays"). These are the constructs a driver may reject one at a time, so
 * each is a parameter here and a probe of its own (probes.ts). The matrix
 * operations themselves are written by a MatrixOps (matrixOps.ts): the
 * device's builtins, or an emulation in plain WGSL that checks the rest of the
 * kernel on adapters without the feature. The right operand is Wᵀ: element
 * (i, o) sits at o·stride + i, a column-major load.
 *
 * Bindings: 0 X, 1 W, 2 Y, 3 uniform {rows, inDim, outDim}. The shape must
 * tile exactly (subgroupMatrixShapeProblem).
 */
import { DEVICE_MATRICES, type MatrixConfig, type MatrixOps } from "./matrixOps.ts"
import { SPLIT_F32_WGSL } from "./splitF32.ts"

export interface SubgroupMatrixSpec {
  readonly config: MatrixConfig
  /** invocations per subgroup (the device's fixed size): the workgroup size */
  readonly subgroupSize: number
  readonly staging: "global" | "workgroup"
  readonly rowMatrices: number
  readonly colMatrices: number
  readonly matrices: "unrolled" | "arrays"
  readonly input: "f16" | "split-f32"
  /** inner elements staged per step (workgroup staging): a multiple of K */
  readonly kSlice: number
}

export const tileRows = (s: SubgroupMatrixSpec): number => s.rowMatrices * s.config.M
export const tileCols = (s: SubgroupMatrixSpec): number => s.colMatrices * s.config.N

/** Why `spec` cannot run rows × inDim → outDim, or undefined. */
export const subgroupMatrixShapeProblem = (s: SubgroupMatrixSpec, rows: number, inDim: number, outDim: number): string | undefined => {
  const step = s.staging === "workgroup" ? s.kSlice : s.config.K
  if (s.input === "split-f32" && s.staging !== "workgroup") return "split-f32 input needs workgroup staging (the halves are made there)"
  if (s.staging === "workgroup" && s.kSlice % s.config.K !== 0) return `kSlice (${s.kSlice}) must be a multiple of K (${s.config.K})`
  if (rows % tileRows(s) !== 0) return `rows (${rows}) must be a multiple of the tile's ${tileRows(s)}`
  if (outDim % tileCols(s) !== 0) return `outDim (${outDim}) must be a multiple of the tile's ${tileCols(s)}`
  if (inDim % step !== 0) return `inDim (${inDim}) must be a multiple of ${step}`
  return undefined
}

/** Bytes of workgroup memory the kernel declares. */
export const subgroupMatrixStorageBytes = (s: SubgroupMatrixSpec): number => {
  if (s.staging === "global") return 0
  const halves = s.input === "split-f32" ? 2 : 1
  const operands = (halves * tileRows(s) + tileCols(s)) * s.kSlice * 2
  return s.input === "split-f32" ? operands + tileRows(s) * tileCols(s) * 4 + tileRows(s) * 4 : operands
}

const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

/** The statements of one inner step of K (at inner offset `k`, an expression), for both matrix layouts; a block of its own when unrolled (its names repeat). */
export const innerStep = (s: SubgroupMatrixSpec, ops: MatrixOps, k: string): string => {
  const { M, N } = s.config
  const staged = s.staging === "workgroup"
  // where row block m of X and column block c of Wᵀ start, and their strides
  const loadX = (half: string, target: string, declare: boolean, m: string) => staged
    ? ops.load("left", s.config, target, declare, half, `${m} * ${M * s.kSlice}u + ${k}`, false, `${s.kSlice}u`)
    : ops.load("left", s.config, target, declare, "x", `(row0 + ${m} * ${M}u) * n + ${k}`, false, "n")
  const loadW = (target: string, declare: boolean, c: string) => staged
    ? ops.load("right", s.config, target, declare, "ws", `${c} * ${N * s.kSlice}u + ${k}`, true, `${s.kSlice}u`)
    : ops.load("right", s.config, target, declare, "w", `(col0 + ${c} * ${N}u) * n + ${k}`, true, "n")
  const halves = s.input === "split-f32" ? ["xh", "xl"] : [staged ? "xs" : "x"]
  const mma = (acc: string, a: string, b: string) => ops.multiplyAccumulate(s.config, acc, a, b)
  if (s.matrices === "arrays") {
    return [
      ...halves.map((h, j) => `for (var m = 0u; m < ${s.rowMatrices}u; m++) {\n${loadX(h, `a${j}[m]`, false, "m")}\n}`),
      `for (var c = 0u; c < ${s.colMatrices}u; c++) {\n${loadW("b[c]", false, "c")}\n}`,
      `for (var m = 0u; m < ${s.rowMatrices}u; m++) {`,
      `  for (var c = 0u; c < ${s.colMatrices}u; c++) {`,
      ...halves.map((_, j) => mma(`acc[m * ${s.colMatrices}u + c]`, `a${j}[m]`, "b[c]")),
      "  }",
      "}"
    ].join("\n")
  }
  return [
    ...halves.flatMap((h, j) => range(s.rowMatrices).map((m) => loadX(h, `a${j}_${m}`, true, `${m}u`))),
    ...range(s.colMatrices).map((c) => loadW(`b_${c}`, true, `${c}u`)),
    ...range(s.rowMatrices).flatMap((m) => range(s.colMatrices).flatMap((c) => halves.map((_, j) => mma(`acc_${m}_${c}`, `a${j}_${m}`, `b_${c}`))))
  ].join("\n")
}

/** The result matrices, zeroed (and, held in arrays, the operands). */
export const declarations = (s: SubgroupMatrixSpec, ops: MatrixOps): string => {
  const result = ops.type("result", s.config)
  if (s.matrices === "unrolled") {
    return range(s.rowMatrices).flatMap((m) => range(s.colMatrices).map((c) => `var acc_${m}_${c} = ${result}();`)).join("\n")
  }
  const halves = s.input === "split-f32" ? 2 : 1
  return [
    `var acc: array<${result}, ${s.rowMatrices * s.colMatrices}>;`,
    `for (var i = 0u; i < ${s.rowMatrices * s.colMatrices}u; i++) { acc[i] = ${result}(); }`,
    ...range(halves).map((j) => `var a${j}: array<${ops.type("left", s.config)}, ${s.rowMatrices}>;`),
    `var b: array<${ops.type("right", s.config)}, ${s.colMatrices}>;`
  ].join("\n")
}

/** Each result matrix into Y at the tile's place, or (`staged`) into `ys`, the tile in workgroup memory. */
export const stores = (s: SubgroupMatrixSpec, ops: MatrixOps, staged: boolean): string => {
  const { M, N } = s.config
  const store = (m: string, c: string, matrix: string) => staged
    ? ops.store(s.config, "ys", `${m} * ${M * tileCols(s)}u + ${c} * ${N}u`, matrix, `${tileCols(s)}u`)
    : ops.store(s.config, "y", `(row0 + ${m} * ${M}u) * params.outDim + col0 + ${c} * ${N}u`, matrix, "params.outDim")
  if (s.matrices === "arrays") {
    return `for (var m = 0u; m < ${s.rowMatrices}u; m++) {
  for (var c = 0u; c < ${s.colMatrices}u; c++) {
${store("m", "c", `acc[m * ${s.colMatrices}u + c]`)}
  }
}`
  }
  return range(s.rowMatrices).flatMap((m) => range(s.colMatrices).map((c) => store(`${m}u`, `${c}u`, `acc_${m}_${c}`))).join("\n")
}

/** The rows' scale exponents into `row_exp` (split-f32): a thread per row, its whole inner dimension. */
const rowScales = (s: SubgroupMatrixSpec): string => `
  for (var r = lid; r < ${tileRows(s)}u; r += ${s.subgroupSize}u) {
    var largest = 0.0;
    for (var i = 0u; i < n; i++) { largest = max(largest, abs(x[(row0 + r) * n + i])); }
    row_exp[r] = row_scale_exponent(largest);
  }
  workgroupBarrier();`

/** One slice of X and of W into workgroup memory (X as halves for split-f32). */
const stageSlice = (s: SubgroupMatrixSpec): string => {
  const ks = s.kSlice
  const xStage = s.input === "split-f32"
    ? `let halves = split_f32(ldexp(x[(row0 + e / ${ks}u) * n + k0 + e % ${ks}u], row_exp[e / ${ks}u]));
      xh[e] = halves.x;
      xl[e] = halves.y;`
    : `xs[e] = x[(row0 + e / ${ks}u) * n + k0 + e % ${ks}u];`
  return `
    for (var e = lid; e < ${tileRows(s) * ks}u; e += ${s.subgroupSize}u) {
      ${xStage}
    }
    for (var e = lid; e < ${tileCols(s) * ks}u; e += ${s.subgroupSize}u) {
      ws[e] = w[(col0 + e / ${ks}u) * n + k0 + e % ${ks}u];
    }
    workgroupBarrier();`
}

export const subgroupMatrixCode = (s: SubgroupMatrixSpec, ops: MatrixOps = DEVICE_MATRICES): string => {
  const split = s.input === "split-f32"
  const staged = s.staging === "workgroup"
  const rows = tileRows(s)
  const cols = tileCols(s)
  const workgroupArrays = !staged ? "" : [
    ...(split ? ["xh", "xl"] : ["xs"]).map((h) => `var<workgroup> ${h}: array<f16, ${rows * s.kSlice}>;`),
    `var<workgroup> ws: array<f16, ${cols * s.kSlice}>;`,
    ...(split ? [`var<workgroup> ys: array<f32, ${rows * cols}>;`, `var<workgroup> row_exp: array<i32, ${rows}>;`] : [])
  ].join("\n")
  const loop = staged
    ? `for (var k0 = 0u; k0 < n; k0 += ${s.kSlice}u) {
    ${stageSlice(s)}
    ${range(s.kSlice / s.config.K).map((j) => `{\n${innerStep(s, ops, `${j * s.config.K}u`)}\n}`).join("\n")}
    workgroupBarrier();
  }`
    : `for (var k = 0u; k < n; k += ${s.config.K}u) {
    ${innerStep(s, ops, "k")}
  }`
  const epilogue = split
    ? `${stores(s, ops, true)}
  workgroupBarrier();
  for (var e = lid; e < ${rows * cols}u; e += ${s.subgroupSize}u) {
    let r = e / ${cols}u;
    y[(row0 + r) * params.outDim + col0 + e % ${cols}u] = ldexp(ys[e], -row_exp[r]);
  }`
    : stores(s, ops, false)
  return `enable f16;
${ops.name === "device" ? "enable chromium_experimental_subgroup_matrix;" : ""}
struct Params { rows: u32, inDim: u32, outDim: u32, unused: u32 }
@group(0) @binding(0) var<storage, read> x: array<${split ? "f32" : "f16"}>;
@group(0) @binding(1) var<storage, read> w: array<f16>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
${split ? SPLIT_F32_WGSL : ""}
${workgroupArrays}

@compute @workgroup_size(${s.subgroupSize})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row0 = wg.y * ${rows}u;
  let col0 = wg.x * ${cols}u;
  let n = params.inDim;
  ${declarations(s, ops)}${split ? rowScales(s) : ""}
  ${loop}
  ${epilogue}
}
`
}
