/**
 * "gemv": Y = in(X)·Wᵀ for rows ≤ 8 (see matmulShared.wgsl.ts for in, s_r and
 * the epilogue), memory bound. Each 32-lane group owns one output column and
 * streams its W row once, in scalars, for all rows; lanes are summed by a tree
 * in workgroup memory. With an rmsnorm input every group sums the squares of
 * the rows it reads, and group 0's sums (group 0 always has a column) are the
 * ones reduced and used.
 */
import { wgsl } from "../gpu/resources.ts"
import { MAX_GRID } from "./common.ts"
import { ifNorm, matmulHeader, type MatmulModule, scaled } from "./matmulShared.wgsl.ts"

/** Largest row count a GEMV kernel takes. */
export const GEMV_MAX_ROWS = 8
export const GEMV_LANES = 32

export const gemvCode = (wg: number, module: MatmulModule): string => {
  const { input } = module
  const R = GEMV_MAX_ROWS
  const L = GEMV_LANES
  return wgsl`${matmulHeader({ ...module, width: 1 })}
var<workgroup> partial: array<f32, ${wg * R}>;
${ifNorm(input, `var<workgroup> squaresPartial: array<f32, ${L * R}>;`)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let rows = min(count.x, ${R}u);
  let lane = li % ${L}u;
  let group = li / ${L}u;
  let o = (wid.y * ${MAX_GRID}u + wid.x) * ${wg / L}u + group;
  var acc: array<f32, ${R}>;
  ${ifNorm(input, `var sq: array<f32, ${R}>;`)}
  if (o < params.outDim) {
    let wRow = o * params.inDim;
    for (var k = lane; k < params.inDim; k += ${L}u) {
      let wv = loadW(wRow + k);
      for (var r = 0u; r < rows; r++) {
        let raw = input(r, k);
        ${ifNorm(input, "sq[r] += raw * raw;")}
        acc[r] += normed(k, raw) * wv;
      }
    }
  }
  for (var r = 0u; r < ${R}u; r++) { partial[r * ${wg}u + li] = acc[r]; }
  ${ifNorm(input, `if (group == 0u) {
    for (var r = 0u; r < ${R}u; r++) { squaresPartial[r * ${L}u + lane] = sq[r]; }
  }`)}
  workgroupBarrier();
  for (var s = ${L / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var r = 0u; r < ${R}u; r++) { partial[r * ${wg}u + li] += partial[r * ${wg}u + li + s]; }
      ${ifNorm(input, `if (group == 0u) {
        for (var r = 0u; r < ${R}u; r++) { squaresPartial[r * ${L}u + lane] += squaresPartial[r * ${L}u + lane + s]; }
      }`)}
    }
    workgroupBarrier();
  }
  if (lane == 0u && o < params.outDim) {
    for (var r = 0u; r < rows; r++) { finish(r, o, ${scaled(input, `partial[r * ${wg}u + li]`, `squaresPartial[r * ${L}u]`)}); }
  }
}
`
}
