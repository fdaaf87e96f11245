/**
 * "gemv-vec4": Y = in(X)·Wᵀ for rows ≤ 8 (see matmulShared.wgsl.ts for in,
 * s_r and the epilogue), memory bound. A workgroup owns COLS output columns;
 * all its invocations stride along the inner dimension together, loading W in
 * vec4s (a 16-bit W: two u32 words, four weights), so every weight is read
 * exactly once per step and each load of X serves COLS columns. Each
 * invocation keeps rows × COLS partial dot products (and, for rmsnorm, the
 * rows' partial sums of squares), which the workgroup then adds up:
 *
 * - "subgroup": subgroupAdd within each subgroup, then one slot per subgroup
 *   in workgroup memory, added in subgroup order by one invocation per value;
 * - "workgroup": a tree in workgroup memory, for devices without subgroups.
 *
 * Columns past outDim re-read the last W row (only in the last workgroup) and
 * are not stored.
 */
import { wgsl } from "../gpu/resources.ts"
import { MAX_GRID } from "./common.ts"
import { GEMV_MAX_ROWS } from "./matmulGemv.wgsl.ts"
import { dotOf, ifNorm, matmulHeader, type MatmulInput, type MatmulModule } from "./matmulShared.wgsl.ts"

export const GEMV_VEC4_COLS = 4

export type GemvReduction = "subgroup" | "workgroup"

/** Partial values each invocation hands to the reduction: rows × COLS dot products, then the rows' sums of squares. */
const gemvVec4Values = (input: MatmulInput): number =>
  GEMV_MAX_ROWS * GEMV_VEC4_COLS + (input === "rmsnorm" ? GEMV_MAX_ROWS : 0)

/** Smallest subgroup WebGPU allows (subgroupMinSize ≥ 4): bounds the subgroups of a workgroup. */
const MIN_SUBGROUP = 4

/** Workgroup bytes the reduction needs. */
export const gemvVec4StorageBytes = (wg: number, reduction: GemvReduction, input: MatmulInput): number => {
  const values = gemvVec4Values(input)
  return 4 * (reduction === "subgroup" ? (wg / MIN_SUBGROUP) * values + values : wg * values)
}

const reduceCode = (wg: number, reduction: GemvReduction, values: number, value: (i: number) => string): string => {
  const all = Array.from({ length: values }, (_, i) => i)
  if (reduction === "subgroup") {
    return `${all.map((i) => `{ let s = subgroupAdd(${value(i)}); if (sgLane == 0u) { partial[sgId * ${values}u + ${i}u] = s; } }`).join("\n  ")}
  workgroupBarrier();
  if (li < ${values}u) {
    var s = 0.0;
    for (var g = 0u; g < sgCount; g++) { s += partial[g * ${values}u + li]; }
    total[li] = s;
  }
  workgroupBarrier();`
  }
  return `${all.map((i) => `partial[${i * wg}u + li] = ${value(i)};`).join("\n  ")}
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (li < s) {
      for (var i = 0u; i < ${values}u; i++) { partial[i * ${wg}u + li] += partial[i * ${wg}u + li + s]; }
    }
    workgroupBarrier();
  }`
}

export const gemvVec4Code = (wg: number, reduction: GemvReduction, module: MatmulModule): string => {
  const { width, input } = module
  const C = GEMV_VEC4_COLS
  const R = GEMV_MAX_ROWS
  const values = gemvVec4Values(input)
  const rowsI = Array.from({ length: R }, (_, r) => r)
  const colsI = Array.from({ length: C }, (_, c) => c)
  const acc = (r: number, c: number) => `a${r}_${c}`
  const value = (i: number) => (i < R * C ? acc(Math.floor(i / C), i % C) : `q${i - R * C}`)
  const subgroups = reduction === "subgroup"
  const totalOf = (i: string) => (subgroups ? `total[${i}]` : `partial[(${i}) * ${wg}u]`)
  const builtins = subgroups
    ? ", @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_id) sgId: u32, @builtin(num_subgroups) sgCount: u32"
    : ""
  return wgsl`${matmulHeader({ ...module, subgroups })}
${subgroups
  ? `var<workgroup> partial: array<f32, ${(wg / MIN_SUBGROUP) * values}>;\nvar<workgroup> total: array<f32, ${values}>;`
  : `var<workgroup> partial: array<f32, ${wg * values}>;`}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32${builtins}) {
  let rows = min(count.x, ${R}u);
  let o0 = (wid.y * ${MAX_GRID}u + wid.x) * ${C}u;
  let n = loads();
  ${colsI.map((c) => `let w${c} = min(o0 + ${c}u, params.outDim - 1u) * n;`).join("\n  ")}
  ${rowsI.flatMap((r) => colsI.map((c) => `var ${acc(r, c)} = 0.0;`)).join(" ")}
  ${ifNorm(input, rowsI.map((r) => `var q${r} = 0.0;`).join(" "))}
  for (var k = li; k < n; k += ${wg}u) {
    ${colsI.map((c) => `let wv${c} = loadW(w${c} + k);`).join("\n    ")}
    ${rowsI.map((r) => `if (${r}u < rows) {
      let raw = input(${r}u, k);
      ${ifNorm(input, `q${r} += squares(raw);`)}
      let xv = normed(k, raw);
      ${colsI.map((c) => `${acc(r, c)} += ${dotOf(width, "xv", `wv${c}`)};`).join(" ")}
    }`).join("\n    ")}
  }
  ${reduceCode(wg, reduction, values, value)}
  if (li < ${R * C}u) {
    let r = li / ${C}u;
    let o = o0 + li % ${C}u;
    if (r < rows && o < params.outDim) {
      ${input === "rmsnorm" ? `finish(r, o, ${totalOf("li")} * rowScale(${totalOf(`${R * C}u + r`)}));` : `finish(r, o, ${totalOf("li")});`}
    }
  }
}
`
}
