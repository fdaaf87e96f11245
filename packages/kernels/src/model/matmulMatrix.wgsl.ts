/**
 * "matrix": Y = in(X)·Wᵀ on the device's matrix units (see matmulShared.wgsl.ts
 * for in, s_r and the epilogue), for f16 weights:
 *
 *   Y[r][o] = s_r · 2^−e_r · Σ_i (hi + lo)(2^e_r · in(r, i)) · W[o][i]
 *
 * the product of the probe `split-f32-2x4` (subgroupMatrix/probes.ts) with
 * the prologues and epilogue every matmul kernel has. A workgroup is one
 * subgroup owning rowMatrices·M rows × colMatrices·N columns. It first walks
 * its rows once (a lane per row): the largest |in(r, i)| gives the power of
 * two e_r that brings it into [2¹⁴, 2¹⁵) (splitF32.ts), and an rmsnorm input
 * sums its squares there too. Then, slice by slice of kSlice inner elements,
 * it stages the scaled rows as f16 halves and W as f16 in workgroup memory —
 * zeros past the rows, columns and inner dimension, so any shape runs — and
 * multiplies both halves by W into f32 result matrices. The results go
 * through workgroup memory, where each is unscaled exactly (ldexp) and
 * stored by `finish` for the rows and columns that exist.
 *
 * f16 weights are f16 values whatever their storage (native or packed), so
 * every product is exact in f32; f32 and bf16 weights are not, and this
 * kernel does not take them (matrixWeightsProblem).
 */
import { wgsl } from "../gpu/resources.ts"
import { declarations, innerStep, stores, type SubgroupMatrixSpec, tileCols, tileRows } from "../subgroupMatrix/matmulSubgroupMatrix.wgsl.ts"
import type { MatrixUnits } from "../subgroupMatrix/matrixOps.ts"
import { SPLIT_F32_WGSL } from "../subgroupMatrix/splitF32.ts"
import { matmulHeader, type MatmulModule } from "./matmulShared.wgsl.ts"
import type { WeightStorage } from "./weightType.ts"

/** The tile of the probe it stands on: 2×4 result matrices, slices of 32. */
export const MATRIX_TILE = { rowMatrices: 2, colMatrices: 4, kSlice: 32 } as const

/** The probe spec this kernel shares its matrix code with. */
export const matrixSpec = (units: MatrixUnits): SubgroupMatrixSpec => ({
  config: units.config,
  subgroupSize: units.subgroupSize,
  staging: "workgroup",
  matrices: "unrolled",
  input: "split-f32",
  ...MATRIX_TILE,
  // a slice holds whole inner steps of the config
  kSlice: Math.max(MATRIX_TILE.kSlice, units.config.K)
})

/** Why the matrix kernel cannot read weights held as `weights`, or undefined. */
export const matrixWeightsProblem = (weights: WeightStorage): string | undefined =>
  weights === "f16-native" || weights === "f16-packed" ? undefined : `the matrix kernel multiplies f16 weights, not ${weights} ones`

/** Workgroup bytes: both halves and W of one slice, the result tile, each row's exponent and scale. */
export const matrixStorageBytes = (units: MatrixUnits): number => {
  const s = matrixSpec(units)
  return (2 * tileRows(s) + tileCols(s)) * s.kSlice * 2 + tileRows(s) * tileCols(s) * 4 + tileRows(s) * 8
}

export const matrixGrid = (units: MatrixUnits) => (rows: number, outDim: number): readonly [number, number] => {
  const s = matrixSpec(units)
  return [Math.ceil(outDim / tileCols(s)), Math.ceil(rows / tileRows(s))]
}

/** Each row's exponent (and, for rmsnorm, its scale s_r): a lane per row, over its whole inner dimension. */
const rowPass = (rows: number, lanes: number, scale: string): string => `
  for (var r = lid; r < ${rows}u; r += ${lanes}u) {
    var largest = 0.0;
    var sumSq = 0.0;
    if (row0 + r < rows) {
      for (var i = 0u; i < n; i++) {
        let v = input(row0 + r, i);
        sumSq += squares(v);
        largest = max(largest, abs(normed(i, v)));
      }
    }
    row_exp[r] = row_scale_exponent(largest);
    row_s[r] = ${scale};
  }
  workgroupBarrier();`

/** One slice of the scaled rows (as halves) and of W into workgroup memory, zeros past the edges. */
const stageSlice = (rows: number, cols: number, ks: number, lanes: number): string => `
    for (var e = lid; e < ${rows * ks}u; e += ${lanes}u) {
      let r = row0 + e / ${ks}u;
      let k = k0 + e % ${ks}u;
      var halves = vec2<f16>();
      if (r < rows && k < n) { halves = split_f32(ldexp(normed(k, input(r, k)), row_exp[e / ${ks}u])); }
      xh[e] = halves.x;
      xl[e] = halves.y;
    }
    for (var e = lid; e < ${cols * ks}u; e += ${lanes}u) {
      let o = col0 + e / ${ks}u;
      let k = k0 + e % ${ks}u;
      var v = 0.0;
      if (o < params.outDim && k < n) { v = loadW(o * n + k); }
      ws[e] = f16(v);
    }
    workgroupBarrier();`

export const matrixCode = (units: MatrixUnits, module: MatmulModule): string => {
  const s = matrixSpec(units)
  const rows = tileRows(s)
  const cols = tileCols(s)
  const lanes = s.subgroupSize
  const enables = [
    module.weights === "f16-native" ? "" : "enable f16;\n",
    units.ops.name === "device" ? "enable chromium_experimental_subgroup_matrix;\n" : ""
  ].join("")
  return wgsl`${enables}${matmulHeader({ ...module, width: 1 })}
${SPLIT_F32_WGSL}
var<workgroup> xh: array<f16, ${rows * s.kSlice}>;
var<workgroup> xl: array<f16, ${rows * s.kSlice}>;
var<workgroup> ws: array<f16, ${cols * s.kSlice}>;
var<workgroup> ys: array<f32, ${rows * cols}>;
var<workgroup> row_exp: array<i32, ${rows}>;
var<workgroup> row_s: array<f32, ${rows}>;

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let rows = count.x;
  let row0 = wg.y * ${rows}u;
  let col0 = wg.x * ${cols}u;
  let n = params.inDim;
  ${declarations(s, units.ops)}
  ${rowPass(rows, lanes, module.input === "rmsnorm" ? "rowScale(sumSq)" : "1.0")}
  for (var k0 = 0u; k0 < n; k0 += ${s.kSlice}u) {
    ${stageSlice(rows, cols, s.kSlice, lanes)}
    ${Array.from({ length: s.kSlice / s.config.K }, (_, j) => `{\n${innerStep(s, units.ops, `${j * s.config.K}u`)}\n}`).join("\n")}
    workgroupBarrier();
  }
  ${stores(s, units.ops, true)}
  workgroupBarrier();
  for (var e = lid; e < ${rows * cols}u; e += ${lanes}u) {
    let r = e / ${cols}u;
    let o = col0 + e % ${cols}u;
    if (row0 + r < rows && o < params.outDim) { finish(row0 + r, o, ldexp(ys[e], -row_exp[r]) * row_s[r]); }
  }
}
`
}
