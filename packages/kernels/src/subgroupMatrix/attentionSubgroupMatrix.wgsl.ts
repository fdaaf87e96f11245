/**
 * The level attention's two products on the matrix units, for the rows of
 * queries that share one node (Hydragen's shared-prefix attention):
 *
 *   s_tj = scale·q_t·k_j,   o_t = Σ_j e^(s_tj − m_t)·v_j / ℓ_t,   lse_t = m_t + ln ℓ_t
 *
 * with m_t = max_j s_tj and ℓ_t = Σ_j e^(s_tj − m_t). Q is f32 [rows][D], K and
 * V f16 [keys][D] (one KV head, keys in order), O f32 [rows][D], lse f32
 * [rows]. Both products keep f32 accuracy as the matmul does (splitF32.ts): Q
 * rows and the weights e^(s − m) (in (0, 1], scaled by 2¹⁴) are split into f16
 * halves. A result matrix cannot be scaled row by row, so the keys are walked
 * twice: first for the rows' maxima, then for P·V with them — no accumulator
 * ever needs rescaling, at the price of computing Q·Kᵀ twice.
 *
 * A workgroup is one subgroup and owns M query rows; the keys go by tiles of
 * KT = lcm(N, K) (N keys per score matrix, K keys per step of P·V). Scores of
 * a tile go through workgroup memory, where a thread per row takes the
 * maxima and sums and the weights are split. Matrix types and MatrixOps as in
 * matrixOps.ts.
 *
 * Bindings: 0 Q, 1 K, 2 V, 3 O, 4 lse, 5 uniform {rows, keys, scale}. rows
 * must be a multiple of M, keys of KT, D of K and N.
 */
import { DEVICE_MATRICES, type MatrixConfig, type MatrixOps } from "./matrixOps.ts"
import { SPLIT_F32_WGSL } from "./splitF32.ts"

export interface AttentionMatrixSpec {
  readonly config: MatrixConfig
  /** invocations per subgroup: the workgroup size */
  readonly subgroupSize: number
  readonly headDim: number
}

/** An attention product's shape: `rows` queries over `keys` keys of one head. */
export interface AttentionProductShape {
  readonly rows: number
  readonly keys: number
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b))

/** Keys per tile: whole score matrices (N keys) and whole P·V steps (K keys). */
export const keyTile = (c: MatrixConfig): number => (c.N * c.K) / gcd(c.N, c.K)

/** Why `spec` cannot run `shape`, or undefined. */
export const attentionMatrixProblem = (s: AttentionMatrixSpec, shape: AttentionProductShape): string | undefined => {
  const { M, N, K } = s.config
  if (s.headDim % K !== 0 || s.headDim % N !== 0) return `headDim (${s.headDim}) must be a multiple of K (${K}) and N (${N})`
  if (shape.rows % M !== 0) return `rows (${shape.rows}) must be a multiple of M (${M})`
  if (shape.keys % keyTile(s.config) !== 0 || shape.keys === 0) return `keys (${shape.keys}) must be a positive multiple of ${keyTile(s.config)}`
  return undefined
}

const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

/**
 * `fn scores_tile(j0: u32)`: scores (unscaled, Q's row scale in them) of the
 * KT keys from key j0 of array `keys` ([key][D], as f16) against the
 * rowMatrices·M rows of Q's halves qh and ql ([rows][D]), into sw [rows][KT].
 */
export const scoresTileWgsl = (c: MatrixConfig, ops: MatrixOps, headDim: number, keys: string, rowMatrices = 1): string => {
  const kt = keyTile(c)
  const body = range(kt / c.N).flatMap((j) => range(rowMatrices).map((r) => `{
var acc = ${ops.type("result", c)}();
for (var dk = 0u; dk < ${headDim / c.K}u; dk++) {
${ops.load("left", c, "qh_m", true, "qh", `${r * c.M * headDim}u + dk * ${c.K}u`, false, `${headDim}u`)}
${ops.load("left", c, "ql_m", true, "ql", `${r * c.M * headDim}u + dk * ${c.K}u`, false, `${headDim}u`)}
${ops.load("right", c, "k_m", true, keys, `(j0 + ${j * c.N}u) * ${headDim}u + dk * ${c.K}u`, true, `${headDim}u`)}
${ops.multiplyAccumulate(c, "acc", "qh_m", "k_m")}
${ops.multiplyAccumulate(c, "acc", "ql_m", "k_m")}
}
${ops.store(c, "sw", `${r * c.M * kt + j * c.N}u`, "acc", `${kt}u`)}
}`))
  return `fn scores_tile(j0: u32) {\n${body.join("\n")}\n}`
}

/**
 * What scoresTileWgsl and weightedValuesWgsl read and write, for `rows` rows
 * and `keys` keys a tile: Q's f16 halves qh, ql [rows][D], the tile's scores
 * (then weights) sw [rows][keys], P's halves ph, pl [rows][keys] with P's
 * scale, and O as stored from the accumulators, ow [rows][D]; with split_f32.
 */
export const splitOperandsWgsl = (rows: number, headDim: number, keys: number): string => `${SPLIT_F32_WGSL}
// P's scale: the weights are in (0, 1], their halves in f16's normal range
const P_SCALE = 16384.0;
var<workgroup> qh: array<f16, ${rows * headDim}>;
var<workgroup> ql: array<f16, ${rows * headDim}>;
var<workgroup> sw: array<f32, ${rows * keys}>;
var<workgroup> ph: array<f16, ${rows * keys}>;
var<workgroup> pl: array<f16, ${rows * keys}>;
var<workgroup> ow: array<f32, ${rows * headDim}>;`

/** The P·V accumulator of row matrix r and column matrix col: `o_${r·(D/N) + col}`. */
export const accumulatorName = (c: MatrixConfig, headDim: number, r: number, col: number): string => `o_${r * (headDim / c.N) + col}`

/**
 * P·V of the KT keys from key j0 of array `values` ([key][D], as f16) into
 * the accumulators (accumulatorName), P's halves in ph and pl [rows][KT];
 * each value matrix is loaded once for every row matrix.
 */
export const weightedValuesWgsl = (c: MatrixConfig, ops: MatrixOps, headDim: number, values: string, rowMatrices = 1): string => {
  const kt = keyTile(c)
  const rows = range(rowMatrices)
  return range(kt / c.K).map((step) => `{
${rows.map((r) => `${ops.load("left", c, `ph_${r}`, true, "ph", `${r * c.M * kt + step * c.K}u`, false, `${kt}u`)}
${ops.load("left", c, `pl_${r}`, true, "pl", `${r * c.M * kt + step * c.K}u`, false, `${kt}u`)}`).join("\n")}
${range(headDim / c.N).map((col) => `{
${ops.load("right", c, "v_m", true, values, `(j0 + ${step * c.K}u) * ${headDim}u + ${col * c.N}u`, false, `${headDim}u`)}
${rows.map((r) => `${ops.multiplyAccumulate(c, accumulatorName(c, headDim, r, col), `ph_${r}`, "v_m")}
${ops.multiplyAccumulate(c, accumulatorName(c, headDim, r, col), `pl_${r}`, "v_m")}`).join("\n")}
}`).join("\n")}
}`).join("\n")
}

export const attentionMatrixCode = (s: AttentionMatrixSpec, ops: MatrixOps = DEVICE_MATRICES): string => {
  const { M, N } = s.config
  const D = s.headDim
  const kt = keyTile(s.config)
  const sg = s.subgroupSize
  return `enable f16;
${ops.name === "device" ? "enable chromium_experimental_subgroup_matrix;" : ""}
struct Params { rows: u32, keys: u32, scale: f32, unused: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f16>;
@group(0) @binding(2) var<storage, read> v: array<f16>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
${splitOperandsWgsl(M, D, kt)}
var<workgroup> row_exp: array<i32, ${M}>;
var<workgroup> row_max: array<f32, ${M}>;
var<workgroup> row_sum: array<f32, ${M}>;

${scoresTileWgsl(s.config, ops, D, "k")}

// a tile's score at e (row e / KT), as the formula's s: Q's row scale taken out
fn score(e: u32) -> f32 {
  return ldexp(sw[e], -row_exp[e / ${kt}u]) * params.scale;
}

@compute @workgroup_size(${sg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row0 = wg.x * ${M}u;
  for (var r = lid; r < ${M}u; r += ${sg}u) {
    var largest = 0.0;
    for (var d = 0u; d < ${D}u; d++) { largest = max(largest, abs(q[(row0 + r) * ${D}u + d])); }
    row_exp[r] = row_scale_exponent(largest);
    row_max[r] = -3.4028234663852886e38;
    row_sum[r] = 0.0;
  }
  workgroupBarrier();
  for (var e = lid; e < ${M * D}u; e += ${sg}u) {
    let halves = split_f32(ldexp(q[row0 * ${D}u + e], row_exp[e / ${D}u]));
    qh[e] = halves.x;
    ql[e] = halves.y;
  }
  workgroupBarrier();
  // first walk: the rows' maxima
  for (var j0 = 0u; j0 < params.keys; j0 += ${kt}u) {
    scores_tile(j0);
    workgroupBarrier();
    for (var r = lid; r < ${M}u; r += ${sg}u) {
      var m = row_max[r];
      for (var c = 0u; c < ${kt}u; c++) { m = max(m, score(r * ${kt}u + c)); }
      row_max[r] = m;
    }
    workgroupBarrier();
  }
  // second walk: the weights with the final maxima, their sums and P·V
  ${range(D / N).map((c) => `var o_${c} = ${ops.type("result", s.config)}();`).join("\n  ")}
  for (var j0 = 0u; j0 < params.keys; j0 += ${kt}u) {
    scores_tile(j0);
    workgroupBarrier();
    for (var e = lid; e < ${M * kt}u; e += ${sg}u) {
      let p = exp(score(e) - row_max[e / ${kt}u]);
      sw[e] = p;
      let halves = split_f32(p * P_SCALE);
      ph[e] = halves.x;
      pl[e] = halves.y;
    }
    workgroupBarrier();
    ${weightedValuesWgsl(s.config, ops, D, "v")}
    for (var r = lid; r < ${M}u; r += ${sg}u) {
      var sum = row_sum[r];
      for (var c = 0u; c < ${kt}u; c++) { sum += sw[r * ${kt}u + c]; }
      row_sum[r] = sum;
    }
    workgroupBarrier();
  }
  ${range(D / N).map((c) => ops.store(s.config, "ow", `${c * N}u`, `o_${c}`, `${D}u`)).join("\n  ")}
  workgroupBarrier();
  for (var e = lid; e < ${M * D}u; e += ${sg}u) {
    o[row0 * ${D}u + e] = ow[e] / (row_sum[e / ${D}u] * P_SCALE);
  }
  for (var r = lid; r < ${M}u; r += ${sg}u) {
    lse[row0 + r] = row_max[r] + log(row_sum[r]);
  }
}
`
}
