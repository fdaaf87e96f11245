/**
 * Level attention on the matrix units: the level kernel's work item and
 * formula (levelAttention.wgsl.ts) — for each stacked row r of the item and
 * the chunk's tokens t ∈ [tokenBegin, min(tokenEnd, limit_r)),
 *
 *     s_rt = scale · q_r·K_t,   m_r = max_t s_rt,   ℓ_r = Σ_t e^(s_rt − m_r)
 *     o_r = Σ_t e^(s_rt − m_r)·V_t / ℓ_r,   lse_r = m_r + ln ℓ_r
 *
 * with Q·Kᵀ and P·V as subgroup-matrix products, as the probe
 * `attention-split-f32` computes them (subgroupMatrix/attentionSubgroupMatrix.wgsl.ts):
 * Q's rows and the weights e^(s − m) (scaled by 2¹⁴) are split into f16
 * halves (splitF32.ts), so both products keep f32 accuracy; K and V are f16
 * values in an f16 pool, exact as matrix operands. A result matrix cannot be
 * rescaled row by row, so the chunk is walked twice: first for the rows'
 * maxima, then for P·V with them — no accumulator ever needs rescaling.
 *
 * A workgroup is one subgroup and owns the tile's rows: one or more row
 * matrices of M rows, each staged K/V tile serving all of them;
 * the keys go by tiles of KT = lcm(N, K), staged from the paged pool into
 * workgroup memory as f16 (zeros past the chunk, scores past a row's limit
 * masked), and the scores of a tile meet in workgroup memory, where a lane
 * per row takes the maxima and sums and the weights are split. A row with
 * no visible token writes (0, NEG), as the other level kernels do.
 */
import { wgsl } from "../gpu/resources.ts"
import type { MatrixUnits } from "../subgroupMatrix/matrixOps.ts"
import { accumulatorName, keyTile, scoresTileWgsl, splitOperandsWgsl, weightedValuesWgsl } from "../subgroupMatrix/attentionSubgroupMatrix.wgsl.ts"
import { kvDtypeOf, type KvStorage } from "./kvStorage.ts"
import { ITEM_WGSL, MAIN_SIGNATURE } from "./levelAttention.wgsl.ts"
import type { LevelTile } from "./tiling.ts"
import { attentionIoWgsl } from "./workItem.wgsl.ts"

export interface LevelMatrixSpec {
  readonly headDim: number
  readonly kv: KvStorage
  readonly units: MatrixUnits
  /** row matrices per workgroup (default 1): more rows share each staged K/V tile, at more registers per lane */
  readonly rowMatrices?: number
}

/** Row matrices per workgroup the tuner may try: their P·V accumulators are rowMatrices·D/N result matrices per lane. */
export const MATRIX_LEVEL_ROW_MATRICES: ReadonlyArray<number> = [1, 2]

/** The matrix tile on `units`: `rowMatrices` row matrices of M rows, keys by lcm(N, K), one subgroup. */
export const matrixLevelTile = (units: MatrixUnits, rowMatrices = 1): LevelTile =>
  ({ rows: rowMatrices * units.config.M, keys: keyTile(units.config), workgroupSize: units.subgroupSize, variant: "matrix" })

/** The row matrices `tile` has on `units`, or undefined where it is none of the tiles they make. */
export const matrixLevelRowMatrices = (units: MatrixUnits, tile: LevelTile): number | undefined =>
  MATRIX_LEVEL_ROW_MATRICES.find((r) => {
    const made = matrixLevelTile(units, r)
    return made.rows === tile.rows && made.keys === tile.keys && made.workgroupSize === tile.workgroupSize
  })

/** Workgroup bytes: Q's halves, the K and V tiles and P's halves as f16; scores and O as f32; per-row values. */
export const matrixLevelBytes = (headDim: number, tile: LevelTile): number =>
  2 * (2 * tile.rows * headDim + 2 * tile.keys * headDim + 2 * tile.rows * tile.keys) +
  4 * (tile.rows * tile.keys + tile.rows * headDim + 6 * tile.rows) + 32

/** Why the matrix level kernel cannot run `spec` on a device with these limits, or undefined. */
export const matrixLevelProblem = (spec: LevelMatrixSpec, limits: GPUSupportedLimits): string | undefined => {
  const { N, K } = spec.units.config
  const tile = matrixLevelTile(spec.units, spec.rowMatrices)
  if (kvDtypeOf(spec.kv) !== "f16") return "the matrix level kernel reads an f16 KV cache (its K and V are matrix operands as they are)"
  if (spec.headDim % K !== 0 || spec.headDim % N !== 0) return `head dim ${spec.headDim} is not a multiple of the matrices' K (${K}) and N (${N})`
  if (tile.workgroupSize > limits.maxComputeInvocationsPerWorkgroup) return `a subgroup of ${tile.workgroupSize} is more invocations than a workgroup may have here`
  const bytes = matrixLevelBytes(spec.headDim, tile)
  if (bytes > limits.maxComputeWorkgroupStorageSize) return `needs ${bytes} bytes of workgroup memory, the device has ${limits.maxComputeWorkgroupStorageSize}`
  return undefined
}

/** The row matrices (MATRIX_LEVEL_ROW_MATRICES) the kernel takes for `spec` at every one of `headDims` on a device with these limits. */
export const fittingRowMatrices = (
  spec: Omit<LevelMatrixSpec, "rowMatrices" | "headDim">, headDims: ReadonlyArray<number>, limits: GPUSupportedLimits
): ReadonlyArray<number> =>
  MATRIX_LEVEL_ROW_MATRICES.filter((rowMatrices) => headDims.every((headDim) => matrixLevelProblem({ ...spec, headDim, rowMatrices }, limits) === undefined))

const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

/** Tokens [t0, t0 + KT) of the chunk from the pools into ks (and vs, with values) as f16, zeros past the chunk. */
const tileLoad = (values: boolean): string => wgsl`
    for (var i = tid; i < KT * D4; i += WG) {
      let t = t0 + i / D4;
      var kv = vec4f(0.0);${values ? `
      var vv = vec4f(0.0);` : ""}
      if (t < it.tokenEnd) {
        let p = it.startSlot + t;
        let at = ((blockIndices[it.tableOffset + p / block] * block + p % block) * poolHeads + wid.z) * D4 + i % D4;
        kv = loadK(at);${values ? `
        vv = loadV(at);` : ""}
      }
      for (var e = 0u; e < 4u; e++) {
        ks[4u * i + e] = f16(kv[e]);${values ? `
        vs[4u * i + e] = f16(vv[e]);` : ""}
      }
    }`

export const levelAttentionMatrixWgsl = (spec: LevelMatrixSpec): string => {
  const { config: c, ops } = spec.units
  const rowMatrices = spec.rowMatrices ?? 1
  const tile = matrixLevelTile(spec.units, rowMatrices)
  const D = spec.headDim
  const M = tile.rows
  const kt = tile.keys
  // every (row matrix, column matrix) of the output, with its accumulator
  const results = range(rowMatrices).flatMap((r) => range(D / c.N).map((col) => ({ r, col, name: accumulatorName(c, D, r, col) })))
  return wgsl`enable f16;
${ops.name === "device" ? "enable chromium_experimental_subgroup_matrix;" : ""}
const D: u32 = ${D}u;
const D4: u32 = ${D / 4}u;
const M: u32 = ${M}u;
const KT: u32 = ${kt}u;
const WG: u32 = ${tile.workgroupSize}u;
${attentionIoWgsl(spec.kv)}
${splitOperandsWgsl(M, D, kt)}
var<workgroup> ks: array<f16, ${kt * D}>;
var<workgroup> vs: array<f16, ${kt * D}>;
var<workgroup> rowExp: array<i32, ${M}>;
var<workgroup> rowMax: array<f32, ${M}>;
var<workgroup> rowSum: array<f32, ${M}>;
var<workgroup> rowEnd: array<u32, ${M}>;
// where each owned row's q starts (in vec4s) and which (slot, head) its partial state is
var<workgroup> rowQ: array<u32, ${M}>;
var<workgroup> rowOut: array<u32, ${M}>;

${scoresTileWgsl(c, ops, D, "ks", rowMatrices)}

// score e of the tile (row e / KT) as the formula's s: Q's row scale taken out; NEG where the row does not see the token
fn score(e: u32, t0: u32) -> f32 {
  let r = e / KT;
  return select(ldexp(sw[e], -rowExp[r]) * params.scale, NEG, t0 + e % KT >= rowEnd[r]);
}

@compute @workgroup_size(${tile.workgroupSize})
${MAIN_SIGNATURE} {${ITEM_WGSL}

  // each row's q (zeros past the item's rows), its power of two, its limit, where it reads and writes
  for (var r = tid; r < M; r += WG) {
    var largest = 0.0;
    var end = 0u;
    if (r < it.rowCount) {
      let flat = it.rowBegin + r;
      let entry = entries[it.entryBase + flat / group];
      end = min(it.tokenEnd, entry.y);
      let row = (entry.x * heads + kvh * group + flat % group) * D4;
      rowQ[r] = row;
      rowOut[r] = (it.partialBase + flat / group) * heads + kvh * group + flat % group;
      for (var c = 0u; c < D4; c++) {
        let v = abs(q[row + c]);
        largest = max(largest, max(max(v.x, v.y), max(v.z, v.w)));
      }
    }
    rowExp[r] = row_scale_exponent(largest);
    rowEnd[r] = end;
    rowMax[r] = NEG;
    rowSum[r] = 0.0;
  }
  workgroupBarrier();
  for (var i = tid; i < M * D4; i += WG) {
    let r = i / D4;
    var v = vec4f(0.0);
    if (r < it.rowCount) { v = q[rowQ[r] + i % D4]; }
    for (var e = 0u; e < 4u; e++) {
      let halves = split_f32(ldexp(v[e], rowExp[r]));
      qh[4u * i + e] = halves.x;
      ql[4u * i + e] = halves.y;
    }
  }

  // first walk: the rows' maxima
  for (var t0 = it.tokenBegin; t0 < it.tokenEnd; t0 += KT) {
    workgroupBarrier();${tileLoad(false)}
    workgroupBarrier();
    scores_tile(0u);
    workgroupBarrier();
    for (var r = tid; r < M; r += WG) {
      var m = rowMax[r];
      for (var j = 0u; j < KT; j++) { m = max(m, score(r * KT + j, t0)); }
      rowMax[r] = m;
    }
  }

  // second walk: the weights with the final maxima, their sums and P·V
  ${results.map((o) => `var ${o.name} = ${ops.type("result", c)}();`).join("\n  ")}
  for (var t0 = it.tokenBegin; t0 < it.tokenEnd; t0 += KT) {
    workgroupBarrier();${tileLoad(true)}
    workgroupBarrier();
    scores_tile(0u);
    workgroupBarrier();
    for (var e = tid; e < M * KT; e += WG) {
      let s = score(e, t0);
      // a masked score is NEG: its weight is 0 whatever the row's maximum (NEG too where the row sees nothing)
      let p = select(exp(s - rowMax[e / KT]), 0.0, s <= NEG_HALF);
      sw[e] = p;
      let halves = split_f32(p * P_SCALE);
      ph[e] = halves.x;
      pl[e] = halves.y;
    }
    workgroupBarrier();
    {
      // the tile's values are staged from key 0 of vs
      let j0 = 0u;
      ${weightedValuesWgsl(c, ops, D, "vs", rowMatrices)}
    }
    for (var r = tid; r < M; r += WG) {
      var sum = rowSum[r];
      for (var j = 0u; j < KT; j++) { sum += sw[r * KT + j]; }
      rowSum[r] = sum;
    }
  }
  workgroupBarrier();
  ${results.map((o) => ops.store(c, "ow", `${o.r * c.M * D + o.col * c.N}u`, o.name, "D")).join("\n  ")}
  workgroupBarrier();

  for (var i = tid; i < M * D4; i += WG) {
    let r = i / D4;
    if (r < it.rowCount) {
      let sum = rowSum[r];
      let o = vec4f(ow[4u * i], ow[4u * i + 1u], ow[4u * i + 2u], ow[4u * i + 3u]);
      partialO[rowOut[r] * D4 + i % D4] = select(vec4f(0.0), o / (sum * P_SCALE), sum > 0.0);
    }
  }
  for (var r = tid; r < it.rowCount && r < M; r += WG) {
    let sum = rowSum[r];
    partialLse[rowOut[r]] = select(NEG, rowMax[r] + log(sum), sum > 0.0);
  }
}
`
}
