/**
 * "register": Y = in(X)·Wᵀ (see matmulShared.wgsl.ts for in, s_r and the
 * epilogue) with barrier-free register tiles read straight from global memory,
 * the form for software adapters, where every barrier switches the CPU between
 * all invocations of a workgroup. Each invocation computes an RB×CB block of Y
 * at a time, over up to `rowsPer` rows (decoding 1×4 over all ≤ 8 rows, so no
 * row is computed twice; prefill 4×4, up to 16 rows per invocation), loading
 * vec4s along the inner dimension when inDim % 4 = 0. An rmsnorm input sums
 * each row's squares in the same pass over the row.
 *
 * Invocation id = rowGroup · ⌈outDim/CB⌉ + colBlock. Rows and columns past the
 * end are clamped for loading (a few redundant products) and skipped on store.
 */
import { wgsl } from "../gpu/resources.ts"
import { MAX_GRID } from "./common.ts"
import { ifNorm, laneSum, loadType, matmulHeader, type MatmulModule, scaled, storeColumns } from "./matmulShared.wgsl.ts"

/** Register tile: RB×CB outputs per step, up to `rowsPer` rows per invocation. */
export interface RegisterTile {
  readonly rb: number
  readonly cb: number
  readonly rowsPer: number
}

export const REGISTER_WG = 16

export const registerCode = ({ rb, cb, rowsPer }: RegisterTile, module: MatmulModule): string => {
  const { width, input } = module
  const I = Array.from({ length: rb }, (_, i) => i)
  const J = Array.from({ length: cb }, (_, j) => j)
  if (cb % 4 !== 0) throw new RangeError(`register matmul: CB (${cb}) must be a multiple of 4 (the columns are stored four at a time)`)
  const quads = Array.from({ length: cb / 4 }, (_, q) => q)
  const lines = (f: (i: number) => string, of: ReadonlyArray<number>, indent: string): string => of.map(f).join(`\n${indent}`)
  const each = (f: (i: number, j: number) => string, indent: string): string => I.flatMap((i) => J.map((j) => f(i, j))).join(`\n${indent}`)
  return wgsl`${matmulHeader(module)}
@compute @workgroup_size(${REGISTER_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wid.y * ${MAX_GRID}u + wid.x) * ${REGISTER_WG}u + li;
  let colBlocks = (params.outDim + ${cb - 1}u) / ${cb}u;
  let c0 = (id % colBlocks) * ${cb}u;
  let rStart = (id / colBlocks) * ${rowsPer}u;
  let rEnd = min(count.x, rStart + ${rowsPer}u);
  if (rStart >= rEnd) { return; }
  let n = loads();
  ${lines((j) => `let w${j} = wRow(min(c0 + ${j}u, params.outDim - 1u)) * n;`, J, "  ")}
  for (var r0 = rStart; r0 < rEnd; r0 += ${rb}u) {
    ${lines((i) => `let x${i} = min(r0 + ${i}u, rEnd - 1u);`, I, "    ")}
    ${each((i, j) => `var a${i}${j} = ${loadType(width)}();`, "    ")}
    ${ifNorm(input, lines((i) => `var q${i} = 0.0;`, I, "    "))}
    for (var k = 0u; k < n; k++) {
      ${lines((i) => `let raw${i} = input(x${i}, k);`, I, "      ")}
      ${ifNorm(input, lines((i) => `q${i} += squares(raw${i});`, I, "      "))}
      ${lines((i) => `let xv${i} = normed(k, raw${i});`, I, "      ")}
      ${lines((j) => `let wv${j} = loadW(w${j} + k);`, J, "      ")}
      ${each((i, j) => `a${i}${j} += xv${i} * wv${j};`, "      ")}
    }
    ${lines((i) => quads.map((q) => storeColumns(
      module, `r0 + ${i}u`, `c0 + ${4 * q}u`, J.slice(4 * q, 4 * q + 4).map((j) => scaled(input, laneSum(width, `a${i}${j}`), `q${i}`)), `r0 + ${i}u < rEnd`
    )).join("\n    "), I, "    ")}
  }
}
`
}
