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

/** `fn scores_tile(j0)`: scores (unscaled, Q's row scale in them) of keys [j0, j0 + KT) into sw [M][KT]. */
const scoresTile = (s: AttentionMatrixSpec, ops: MatrixOps): string => {
  const { N, K } = s.config
  const D = s.headDim
  const kt = keyTile(s.config)
  const body = range(kt / N).map((j) => `{
var acc = ${ops.type("result", s.config)}();
for (var dk = 0u; dk < ${D / K}u; dk++) {
${ops.load("left", s.config, "qh_m", true, "qh", `dk * ${K}u`, false, `${D}u`)}
${ops.load("left", s.config, "ql_m", true, "ql", `dk * ${K}u`, false, `${D}u`)}
${ops.load("right", s.config, "k_m", true, "k", `(j0 + ${j * N}u) * ${D}u + dk * ${K}u`, true, `${D}u`)}
${ops.multiplyAccumulate(s.config, "acc", "qh_m", "k_m")}
${ops.multiplyAccumulate(s.config, "acc", "ql_m", "k_m")}
}
${ops.store(s.config, "sw", `${j * N}u`, "acc", `${kt}u`)}
}`)
  return `fn scores_tile(j0: u32) {\n${body.join("\n")}\n}`
}

/** P·V of the tile at j0 into the O accumulators, P's halves in ph and pl [M][KT]. */
const weightedValues = (s: AttentionMatrixSpec, ops: MatrixOps): string => {
  const { N, K } = s.config
  const D = s.headDim
  const kt = keyTile(s.config)
  return range(kt / K).map((step) => `{
${ops.load("left", s.config, "ph_m", true, "ph", `${step * K}u`, false, `${kt}u`)}
${ops.load("left", s.config, "pl_m", true, "pl", `${step * K}u`, false, `${kt}u`)}
${range(D / N).map((c) => `{
${ops.load("right", s.config, "v_m", true, "v", `(j0 + ${step * K}u) * ${D}u + ${c * N}u`, false, `${D}u`)}
${ops.multiplyAccumulate(s.config, `o_${c}`, "ph_m", "v_m")}
${ops.multiplyAccumulate(s.config, `o_${c}`, "pl_m", "v_m")}
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
${SPLIT_F32_WGSL}
// P's scale: the weights are in (0, 1], their halves in f16's normal range
const P_SCALE = 16384.0;
var<workgroup> qh: array<f16, ${M * D}>;
var<workgroup> ql: array<f16, ${M * D}>;
var<workgroup> sw: array<f32, ${M * kt}>;
var<workgroup> ph: array<f16, ${M * kt}>;
var<workgroup> pl: array<f16, ${M * kt}>;
var<workgroup> ow: array<f32, ${M * D}>;
var<workgroup> row_exp: array<i32, ${M}>;
var<workgroup> row_max: array<f32, ${M}>;
var<workgroup> row_sum: array<f32, ${M}>;

${scoresTile(s, ops)}

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
    ${weightedValues(s, ops)}
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
