/**
 * Level attention: every (node, tile of stacked query rows, KV chunk) of the
 * plan is one workgroup. For each stacked row r (an entry × a head of this KV
 * group) and the chunk's tokens t ∈ [tokenBegin, min(tokenEnd, limit_r)):
 *
 *     s_rt = scale · q_r·K_t
 *     lse_r = log Σ_t exp(s_rt),   o_r = Σ_t exp(s_rt − lse_r) · V_t
 *
 * computed by online softmax over K/V tiles of `keys` tokens that are loaded
 * from the paged pool into workgroup memory once and used by all `rows` rows.
 * A row with no visible token writes (0, NEG): the merge treats it as empty.
 * K/V are read from the pools in the spec's storage (f32, or f16 widened
 * exactly to f32 as the tile is loaded); the tiles in workgroup memory, the
 * scores, the online softmax and (o, lse) are f32.
 */
import { wgsl } from "../gpu/resources.ts"
import { kvEnableWgsl, type KvStorage } from "./kvStorage.ts"
import type { LevelTile } from "./tiling.ts"
import { attentionIoWgsl } from "./workItem.wgsl.ts"

/** Only what fixes array sizes is compiled in; heads, block size and scale come from `params`. */
export interface LevelAttentionSpec {
  readonly headDim: number
  readonly tile: LevelTile
  /** how the K/V pools are held (kvStorage.ts) */
  readonly kv: KvStorage
}

export const levelAttentionWgsl = (spec: LevelAttentionSpec): string => {
  const { rows, keys, workgroupSize } = spec.tile
  const vec4s = spec.headDim / 4
  const accumulators = Math.ceil((rows * vec4s) / workgroupSize)
  // each thread scores one key against `rowsPerThread` rows, `rowStride` apart
  const rowStride = workgroupSize / keys
  const rowsPerThread = Math.ceil(rows / rowStride)
  return wgsl`${kvEnableWgsl(spec.kv)}
const D4: u32 = ${vec4s}u;
const ROWS: u32 = ${rows}u;
const KEYS: u32 = ${keys}u;
const WG: u32 = ${workgroupSize}u;
const ACC: u32 = ${accumulators}u;
const ROW_STRIDE: u32 = ${rowStride}u;
const ROWS_PER_THREAD: u32 = ${rowsPerThread}u;
${attentionIoWgsl(spec.kv)}
var<workgroup> qs: array<vec4f, ${rows * vec4s}>;
var<workgroup> ks: array<vec4f, ${keys * vec4s}>;
var<workgroup> vs: array<vec4f, ${keys * vec4s}>;
var<workgroup> ss: array<f32, ${rows * keys}>;
var<workgroup> rowMax: array<f32, ${rows}>;
var<workgroup> rowSum: array<f32, ${rows}>;
var<workgroup> rowScale: array<f32, ${rows}>;
var<workgroup> rowEnd: array<u32, ${rows}>;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let index = wid.x + wid.y * groups.x;
  if (index >= arrayLength(&items)) { return; }
  // wid.z: the KV head within the bound pool shard; kvh: among all KV heads
  let kvh = params.headBase + wid.z;
  let heads = params.heads;
  let poolHeads = params.poolHeads;
  let group = params.group;
  let block = params.blockSize;
  let scale = params.scale;
  if (tid == 0u) { item = items[index]; }
  // a uniform copy: loop bounds below guard barriers
  let it = workgroupUniformLoad(&item);

  for (var i = tid; i < ROWS * D4; i += WG) {
    let r = i / D4;
    var v = vec4f(0.0);
    if (r < it.rowCount) {
      let flat = it.rowBegin + r;
      let seq = entries[it.entryBase + flat / group].x;
      v = q[(seq * heads + kvh * group + flat % group) * D4 + i % D4] * scale;
    }
    qs[i] = v;
  }
  if (tid < ROWS) {
    rowMax[tid] = NEG;
    rowSum[tid] = 0.0;
    var end = 0u;
    if (tid < it.rowCount) {
      end = min(it.tokenEnd, entries[it.entryBase + (it.rowBegin + tid) / group].y);
    }
    rowEnd[tid] = end;
  }
  var acc: array<vec4f, ACC>;

  for (var t0 = it.tokenBegin; t0 < it.tokenEnd; t0 += KEYS) {
    workgroupBarrier();
    for (var i = tid; i < KEYS * D4; i += WG) {
      let t = t0 + i / D4;
      var kv = vec4f(0.0);
      var vv = vec4f(0.0);
      if (t < it.tokenEnd) {
        let p = it.startSlot + t;
        let at = ((blockIndices[it.tableOffset + p / block] * block + p % block) * poolHeads + wid.z) * D4 + i % D4;
        kv = loadK(at);
        vv = loadV(at);
      }
      ks[i] = kv;
      vs[i] = vv;
    }
    workgroupBarrier();

    // scores: one key per thread against several rows, reusing the key from registers
    {
      let j = tid % KEYS;
      let r0 = tid / KEYS;
      var s: array<f32, ROWS_PER_THREAD>;
      // explicit: SwiftShader was seen not to re-zero a loop-scoped var declared without initializer
      for (var k = 0u; k < ROWS_PER_THREAD; k++) { s[k] = 0.0; }
      for (var c = 0u; c < D4; c++) {
        let kc = ks[j * D4 + c];
        for (var k = 0u; k < ROWS_PER_THREAD; k++) {
          let r = min(r0 + k * ROW_STRIDE, ROWS - 1u);
          s[k] += dot(qs[r * D4 + c], kc);
        }
      }
      for (var k = 0u; k < ROWS_PER_THREAD; k++) {
        let r = r0 + k * ROW_STRIDE;
        if (r < ROWS) { ss[r * KEYS + j] = select(s[k], NEG, t0 + j >= rowEnd[r]); }
      }
    }
    workgroupBarrier();

    // online softmax: new running max, rescale factor, probabilities in place
    if (tid < ROWS) {
      let old = rowMax[tid];
      var m = old;
      for (var j = 0u; j < KEYS; j++) { m = max(m, ss[tid * KEYS + j]); }
      var alpha = 1.0;
      var sum = 0.0;
      if (m > NEG_HALF) {
        alpha = exp(old - m);
        for (var j = 0u; j < KEYS; j++) {
          let p = exp(ss[tid * KEYS + j] - m);
          ss[tid * KEYS + j] = p;
          sum += p;
        }
      } else {
        for (var j = 0u; j < KEYS; j++) { ss[tid * KEYS + j] = 0.0; }
      }
      rowMax[tid] = m;
      rowSum[tid] = rowSum[tid] * alpha + sum;
      rowScale[tid] = alpha;
    }
    workgroupBarrier();

    for (var k = 0u; k < ACC; k++) {
      let i = tid + k * WG;
      if (i < ROWS * D4) {
        let r = i / D4;
        let c = i % D4;
        var a = acc[k] * rowScale[r];
        for (var j = 0u; j < KEYS; j++) { a += ss[r * KEYS + j] * vs[j * D4 + c]; }
        acc[k] = a;
      }
    }
  }

  for (var k = 0u; k < ACC; k++) {
    let i = tid + k * WG;
    let r = i / D4;
    if (i < ROWS * D4 && r < it.rowCount) {
      let flat = it.rowBegin + r;
      let slot = it.partialBase + flat / group;
      let sum = rowSum[r];
      partialO[(slot * heads + kvh * group + flat % group) * D4 + i % D4] =
        select(vec4f(0.0), acc[k] / sum, sum > 0.0);
    }
  }
  if (tid < it.rowCount) {
    let flat = it.rowBegin + tid;
    let slot = it.partialBase + flat / group;
    let sum = rowSum[tid];
    partialLse[slot * heads + kvh * group + flat % group] = select(NEG, rowMax[tid] + log(sum), sum > 0.0);
  }
}
`
}
