/**
 * "tiled64": Y = in(X)·Wᵀ (see matmulShared.wgsl.ts for in, s_r and the
 * epilogue) through workgroup memory, T×T output tiles (T = 64 with 256
 * invocations, 32 with 64), 4×4 outputs per invocation strided by T/4, K
 * slices of 16, scalar loads stored transposed. An rmsnorm input sums the
 * squares of the X elements each invocation loads (the same rows in every
 * slice) and reduces them through the X tile's memory after the last slice.
 */
import { wgsl } from "../gpu/resources.ts"
import { ifNorm, matmulHeader, type MatmulModule, scaled } from "./matmulShared.wgsl.ts"

const TILED_BK = 16

/** Workgroup bytes of a T×T tile. */
export const tiledStorageBytes = (t: number): number => 2 * t * TILED_BK * 4

export const tiledCode = (t: number, module: MatmulModule): string => {
  const side = t / 4
  const threads = side * side
  const perThread = (t * TILED_BK) / threads
  const { input } = module
  return wgsl`${matmulHeader({ ...module, width: 1 })}
var<workgroup> xs: array<f32, ${t * TILED_BK}>;
var<workgroup> ws: array<f32, ${t * TILED_BK}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let rows = count.x;
  let row0 = wg.y * ${t}u;
  let col0 = wg.x * ${t}u;
  let tx = li % ${side}u;
  let ty = li / ${side}u;
  var acc: array<array<f32, 4>, 4>;
  ${ifNorm(input, `var sq: array<f32, ${perThread}>;`)}
  for (var k0 = 0u; k0 < params.inDim; k0 += ${TILED_BK}u) {
    for (var j = 0u; j < ${perThread}u; j++) {
      let e = li + j * ${threads}u;
      let m = e / ${TILED_BK}u;
      let k = e % ${TILED_BK}u;
      var xv = 0.0;
      var wv = 0.0;
      if (row0 + m < rows && k0 + k < params.inDim) {
        let raw = input(row0 + m, k0 + k);
        ${ifNorm(input, "sq[j] += raw * raw;")}
        xv = normed(k0 + k, raw);
      }
      if (col0 + m < params.outDim && k0 + k < params.inDim) { wv = loadW((col0 + m) * params.inDim + k0 + k); }
      xs[k * ${t}u + m] = xv;
      ws[k * ${t}u + m] = wv;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${TILED_BK}u; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = xs[k * ${t}u + ty + i * ${side}u];
        b[i] = ws[k * ${t}u + tx + i * ${side}u];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  ${ifNorm(input, `// element e = m·${TILED_BK} + k of the X tile: invocation e's partial sum for row m; row m's ${TILED_BK} partials are contiguous
  for (var j = 0u; j < ${perThread}u; j++) { xs[li + j * ${threads}u] = sq[j]; }
  workgroupBarrier();
  var sums: array<f32, 4>;
  for (var i = 0u; i < 4u; i++) {
    for (var k = 0u; k < ${TILED_BK}u; k++) { sums[i] += xs[(ty + i * ${side}u) * ${TILED_BK}u + k]; }
  }`)}
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + ty + i * ${side}u;
    for (var j = 0u; j < 4u; j++) {
      let o = col0 + tx + j * ${side}u;
      if (r < rows && o < params.outDim) { finish(r, o, ${scaled(input, "acc[i][j]", "sums[i]")}); }
    }
  }
}
`
}
