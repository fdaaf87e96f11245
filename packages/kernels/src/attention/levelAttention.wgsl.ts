/**
 * Level attention: every (node, tile of stacked query rows, KV chunk) of the
 * plan is one workgroup. For each stacked row r (an entry × a head of this KV
 * group) and the chunk's tokens t ∈ [tokenBegin, min(tokenEnd, limit_r)):
 *
 *     s_rt = scale · q_r·K_t
 *     lse_r = log Σ_t exp(s_rt),   o_r = Σ_t exp(s_rt − lse_r) · V_t
 *
 * computed by online softmax over K/V tiles of `keys` tokens that are loaded
 * from the paged pool into workgroup memory once and used by all `rows` rows:
 * per tile, with m the running max and l the running sum of a row,
 *
 *     m' = max(m, max_t s_rt),   α = exp(m − m'),   p_t = exp(s_rt − m')
 *     l' = α·l + Σ_t p_t,        o' = α·o + Σ_t p_t·V_t
 *
 * and at the end o = o'/l', lse = m' + log l'. A row with no visible token
 * writes (0, NEG): the merge treats it as empty. K/V are read from the pools
 * in the spec's storage (f32, or f16 widened exactly to f32 as the tile is
 * loaded); the tiles in workgroup memory, the scores, the online softmax and
 * (o, lse) are f32.
 *
 * The tile's variant (tiling.ts) says how the threads share the work:
 * "stacked" keeps the queries and the scores in workgroup memory, "flash2"
 * keeps each row's q, o, m and l in the registers of the lanes that own it.
 */
import { wgsl } from "../gpu/resources.ts"
import { kvEnableWgsl, type KvStorage } from "./kvStorage.ts"
import { flash2Lanes, flash2Slice, type LevelTile, levelVariantOf } from "./tiling.ts"
import { attentionIoWgsl } from "./workItem.wgsl.ts"

/** Only what fixes array sizes is compiled in; heads, block size and scale come from `params`. */
export interface LevelAttentionSpec {
  readonly headDim: number
  /** its variant picks the thread layout (tiling.ts LevelVariant) */
  readonly tile: LevelTile
  /** how the K/V pools are held (kvStorage.ts) */
  readonly kv: KvStorage
}

export const levelAttentionWgsl = (spec: LevelAttentionSpec): string =>
  levelVariantOf(spec.tile) === "flash2" ? flash2Wgsl(spec) : stackedWgsl(spec)

/** The workgroup's item and the shape values, at the top of main; `it` is uniform, so loops over it may hold barriers. */
export const ITEM_WGSL = wgsl`
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
  let it = workgroupUniformLoad(&item);`

/** Tokens [t0, t0 + KEYS) of the chunk from the pools into `ks` and `vs` (zeros past the chunk), all threads. */
const TILE_LOAD_WGSL = wgsl`
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
    }`

export const MAIN_SIGNATURE = wgsl`fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) tid: u32)`

/**
 * Stacked: the tile's queries (scaled) in `qs`; thread (key j, row group)
 * scores key j against rows r0, r0 + ROW_STRIDE, …; one thread per row then
 * turns its scores into probabilities in `ss`; the ROWS × D4 accumulators are
 * spread over all threads, ACC each.
 */
const stackedWgsl = (spec: LevelAttentionSpec): string => {
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
${MAIN_SIGNATURE} {${ITEM_WGSL}

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
    workgroupBarrier();${TILE_LOAD_WGSL}
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

/**
 * Flash2 (FlashAttention-2's shape): thread tid is lane tid / ROWS of row
 * tid % ROWS. A lane owns the vec4s lane, lane + LANES, … of its row's head
 * dim: q (scaled) and o there, and the row's m and l, live in its registers.
 * Per tile each lane dots its slice of q with every key; with several lanes
 * the slices' sums meet in `partial` (laid out [key][thread], so writes and
 * reads are consecutive), and every lane of a row adds them up the same way,
 * so all of them hold the same scores and the same (m, l), and rescale and
 * accumulate their own slice of o with no serial pass. Key and value reads
 * of a 32-wide SIMD group are one address (a broadcast) at 32 rows a tile or
 * more, 2 or 4 consecutive vec4s at 16 or 8: no bank conflicts, so the tiles
 * need no padding.
 */
const flash2Wgsl = (spec: LevelAttentionSpec): string => {
  const { rows, keys, workgroupSize } = spec.tile
  const lanes = flash2Lanes(spec.tile)
  const slice = flash2Slice(spec.headDim, spec.tile)
  const vec4s = spec.headDim / 4
  const shared = lanes > 1
  // the slice is unrolled: q0.., o0.. are plain variables (registers), never an indexed array
  const each = (f: (i: number) => string, separator = "\n"): string => Array.from({ length: slice }, (_, i) => f(i)).join(separator)
  // lanes with an uneven share: the last vec4 of the slice may lie past the row (clamped; its q is zero, its o unwritten)
  const uneven = vec4s % lanes !== 0
  const at = (base: string, i: number): string =>
    uneven && i === slice - 1 ? `${base} + min(lane + ${i * lanes}u, D4 - 1u)` : `${base} + lane + ${i * lanes}u`
  return wgsl`${kvEnableWgsl(spec.kv)}
const D4: u32 = ${vec4s}u;
const ROWS: u32 = ${rows}u;
const LANES: u32 = ${lanes}u;
const KEYS: u32 = ${keys}u;
const WG: u32 = ${workgroupSize}u;
${attentionIoWgsl(spec.kv)}
var<workgroup> ks: array<vec4f, ${keys * vec4s}>;
var<workgroup> vs: array<vec4f, ${keys * vec4s}>;
${shared ? `var<workgroup> partial: array<f32, ${keys * workgroupSize}>;` : ""}

@compute @workgroup_size(${workgroupSize})
${MAIN_SIGNATURE} {${ITEM_WGSL}

  let r = tid % ROWS;
  let lane = tid / ROWS;
  let owned = r < it.rowCount;
  let flat = it.rowBegin + r;
${each((i) => `  var q${i} = vec4f(0.0);
  var o${i} = vec4f(0.0);`)}
  var end = 0u;
  if (owned) {
    let entry = entries[it.entryBase + flat / group];
    end = min(it.tokenEnd, entry.y);
    let row = (entry.x * heads + kvh * group + flat % group) * D4;
${each((i) => (uneven && i === slice - 1 ? `    if (lane + ${i * lanes}u < D4) { q${i} = q[row + lane + ${i * lanes}u] * scale; }` : `    q${i} = q[row + lane + ${i * lanes}u] * scale;`))}
  }
  var m = NEG;
  var l = 0.0;
  var s: array<f32, KEYS>;

  for (var t0 = it.tokenBegin; t0 < it.tokenEnd; t0 += KEYS) {
    workgroupBarrier();${TILE_LOAD_WGSL}
    workgroupBarrier();

    // the tile holds a token this row sees (rows past rowCount see none)
    let live = t0 < end;
    var tileMax = NEG;
    if (live) {
      for (var j = 0u; j < KEYS; j++) {
        let k = j * D4;
        let dotted = ${each((i) => `dot(q${i}, ks[${at("k", i)}])`, " + ")};
        ${shared ? "partial[j * WG + tid] = dotted;" : `let score = select(dotted, NEG, t0 + j >= end);
        s[j] = score;
        tileMax = max(tileMax, score);`}
      }
    }${shared ? `
    workgroupBarrier();
    if (live) {
      for (var j = 0u; j < KEYS; j++) {
        var total = 0.0;
        for (var k = 0u; k < LANES; k++) { total += partial[j * WG + k * ROWS + r]; }
        let score = select(total, NEG, t0 + j >= end);
        s[j] = score;
        tileMax = max(tileMax, score);
      }
    }` : ""}

    if (live) {
      // token t0 is visible, so mNew is a real score and every masked p below is exp(NEG − mNew) = 0
      let mNew = max(m, tileMax);
      let alpha = exp(m - mNew);
      m = mNew;
      l *= alpha;
${each((i) => `      o${i} *= alpha;`)}
      // each value vec4 is read once and feeds this lane's accumulator
      for (var j = 0u; j < KEYS; j++) {
        let p = exp(s[j] - mNew);
        l += p;
        let v = j * D4;
${each((i) => `        o${i} += p * vs[${at("v", i)}];`)}
      }
    }
  }

  if (owned) {
    let head = (it.partialBase + flat / group) * heads + kvh * group + flat % group;
    let out = head * D4 + lane;
    let norm = select(0.0, 1.0 / l, l > 0.0);
${each((i) => (uneven && i === slice - 1 ? `    if (lane + ${i * lanes}u < D4) { partialO[out + ${i * lanes}u] = o${i} * norm; }` : `    partialO[out + ${i * lanes}u] = o${i} * norm;`))}
    if (lane == 0u) { partialLse[head] = select(NEG, m + log(l), l > 0.0); }
  }
}
`
}
