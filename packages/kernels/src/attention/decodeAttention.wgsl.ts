/**
 * Decode attention (paged flash-decoding): one workgroup per (entry, KV chunk)
 * and KV head; its rows are the GROUP query heads of that KV head. For each
 * row r and tokens t ∈ [tokenBegin, min(tokenEnd, limit)):
 *
 *     s_rt = scale · q_r·K_t
 *     lse_r = log Σ_t exp(s_rt),   o_r = Σ_t exp(s_rt − lse_r) · V_t
 *
 * Threads are (key slot k, row r, lane l): the LANES threads of a (k, r) split
 * the head dimension (interleaved vec4s, so a key row is read as one coalesced
 * run straight from the pool, no staging). Each key slot keeps its own online
 * softmax state over the tokens it sees; the slots' states merge at the end by
 *     lse = m + log Σ_k exp(lse_k − m),   o = Σ_k exp(lse_k − lse) · o_k.
 * K/V are read in the spec's storage (f32, or f16 widened exactly to f32);
 * everything computed is f32.
 *
 * Built with `fusedMerge`, an item that carries its sequence's partial slots
 * (rowCount > 0, see WorkItem) merges them itself, as mergeStates.wgsl.ts
 * does and in the same order, its own state taken from registers, and writes
 * the sequence's out and lse instead of its partial state: the other slots
 * (the shared nodes' states) were written by the level kernel's dispatch
 * before it.
 */
import { wgsl } from "../gpu/resources.ts"
import { kvEnableWgsl, type KvStorage } from "./kvStorage.ts"
import type { DecodeTile } from "./tiling.ts"
import { attentionIoWgsl, FUSED_MERGE_OUTPUTS_WGSL } from "./workItem.wgsl.ts"

/** Only what fixes array sizes and the thread layout is compiled in; the rest comes from `params`. */
export interface DecodeAttentionSpec {
  readonly headDim: number
  /** query heads per KV head: the rows of a workgroup */
  readonly group: number
  readonly tile: DecodeTile
  /** how the K/V pools are held (kvStorage.ts) */
  readonly kv: KvStorage
  /** whether items may merge their sequence's states (binds out and lse: FUSED_DECODE_STORAGE_BUFFERS storage buffers) */
  readonly fusedMerge: boolean
}

export const decodeAttentionWgsl = (spec: DecodeAttentionSpec): string => {
  const { lanes, keySlots, tokensPerThread, workgroupSize } = spec.tile
  const group = spec.group
  const vec4s = spec.headDim / 4
  return wgsl`${kvEnableWgsl(spec.kv)}
const D4: u32 = ${vec4s}u;
const GROUP: u32 = ${spec.group}u;
const LANES: u32 = ${lanes}u;
const PER_LANE: u32 = ${vec4s / lanes}u;
const SLOTS: u32 = ${keySlots}u;
const PER_THREAD: u32 = ${tokensPerThread}u;
const STEP: u32 = ${keySlots * tokensPerThread}u;
${attentionIoWgsl(spec.kv)}
${spec.fusedMerge ? FUSED_MERGE_OUTPUTS_WGSL : ""}
var<workgroup> dots: array<f32, ${tokensPerThread * keySlots * group * lanes}>;
var<workgroup> slotMax: array<f32, ${keySlots * group}>;
var<workgroup> slotSum: array<f32, ${keySlots * group}>;
var<workgroup> slotO: array<vec4f, ${keySlots * group * vec4s}>;

// element of token t's K or V row for this KV head, at vec4 c
fn tokenBase(t: u32, poolHead: u32) -> u32 {
  let p = item.startSlot + t;
  let block = params.blockSize;
  return ((blockIndices[item.tableOffset + p / block] * block + p % block) * params.poolHeads + poolHead) * D4;
}

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let index = wid.x + wid.y * groups.x;
  if (index >= arrayLength(&items)) { return; }
  // wid.z: the KV head within the bound pool shard; kvh: among all KV heads
  let kvh = params.headBase + wid.z;
  let heads = params.heads;
  let scale = params.scale;
  if (tid == 0u) { item = items[index]; }
  let it = workgroupUniformLoad(&item);

  let l = tid % LANES;
  let r = (tid / LANES) % GROUP;
  let k = tid / (LANES * GROUP);
  let inSlot = k < SLOTS;
  let entry = entries[it.entryBase];
  let end = min(it.tokenEnd, entry.y);
  let h = kvh * GROUP + r;

  var qv: array<vec4f, PER_LANE>;
  var acc: array<vec4f, PER_LANE>;
  if (inSlot) {
    for (var v = 0u; v < PER_LANE; v++) { qv[v] = q[(entry.x * heads + h) * D4 + l + v * LANES] * scale; }
  }
  var m = NEG;
  var sum = 0.0;

  for (var t0 = it.tokenBegin; t0 < it.tokenEnd; t0 += STEP) {
    var bases: array<u32, PER_THREAD>;
    if (inSlot) {
      for (var u = 0u; u < PER_THREAD; u++) {
        let t = t0 + k + u * SLOTS;
        var s = 0.0;
        if (t < end) {
          let base = tokenBase(t, wid.z) + l;
          bases[u] = base;
          for (var v = 0u; v < PER_LANE; v++) { s += dot(qv[v], loadK(base + v * LANES)); }
        }
        dots[((u * SLOTS + k) * GROUP + r) * LANES + l] = s;
      }
    }
    workgroupBarrier();
    if (inSlot) {
      for (var u = 0u; u < PER_THREAD; u++) {
        let t = t0 + k + u * SLOTS;
        if (t < end) {
          var s = 0.0;
          let at = ((u * SLOTS + k) * GROUP + r) * LANES;
          for (var j = 0u; j < LANES; j++) { s += dots[at + j]; }
          let mNew = max(m, s);
          // m starts at NEG: its weight exp(NEG − s) underflows to 0
          let alpha = exp(m - mNew);
          let p = exp(s - mNew);
          sum = sum * alpha + p;
          for (var v = 0u; v < PER_LANE; v++) { acc[v] = acc[v] * alpha + p * loadV(bases[u] + v * LANES); }
          m = mNew;
        }
      }
    }
    workgroupBarrier();
  }

  if (inSlot) {
    if (l == 0u) {
      slotMax[k * GROUP + r] = m;
      slotSum[k * GROUP + r] = sum;
    }
    for (var v = 0u; v < PER_LANE; v++) { slotO[(k * GROUP + r) * D4 + l + v * LANES] = acc[v]; }
  }
  workgroupBarrier();
  if (inSlot && k == 0u) {
    var mAll = NEG;
    for (var j = 0u; j < SLOTS; j++) { mAll = max(mAll, slotMax[j * GROUP + r]); }
    var total = 0.0;
    var o: array<vec4f, PER_LANE>;
    if (mAll > NEG_HALF) {
      for (var j = 0u; j < SLOTS; j++) {
        let w = exp(slotMax[j * GROUP + r] - mAll);
        total += w * slotSum[j * GROUP + r];
        for (var v = 0u; v < PER_LANE; v++) { o[v] += w * slotO[(j * GROUP + r) * D4 + l + v * LANES]; }
      }
    }
    let slot = it.partialBase;
    for (var v = 0u; v < PER_LANE; v++) { o[v] = select(vec4f(0.0), o[v] / total, total > 0.0); }
    let ownLse = select(NEG, mAll + log(total), total > 0.0);
    ${spec.fusedMerge ? "if (it.rowCount > 0u) { mergeSequence(it, entry.x, h, l, ownLse, o); return; }" : ""}
    for (var v = 0u; v < PER_LANE; v++) { partialO[(slot * heads + h) * D4 + l + v * LANES] = o[v]; }
    if (l == 0u) { partialLse[slot * heads + h] = ownLse; }
  }
}
${spec.fusedMerge ? mergeSequenceWgsl : ""}
`
}

/**
 * Sequence \`seq\`'s states over its slots into out and lse, head h, this
 * thread's vec4s: the merge kernel's sums in its order, the item's own slot
 * (it.partialBase) from \`ownLse\` and \`ownO\` rather than from memory.
 */
const mergeSequenceWgsl = wgsl`
fn mergeSequence(it: WorkItem, seq: u32, h: u32, l: u32, ownLse: f32, ownO: array<vec4f, PER_LANE>) {
  let heads = params.heads;
  var m = NEG_HALF;
  for (var j = 0u; j < it.rowCount; j++) {
    let slot = blockIndices[it.rowBegin + j];
    if (slot == it.partialBase) { m = max(m, ownLse); } else { m = max(m, partialLse[slot * heads + h]); }
  }
  var total = 0.0;
  var o: array<vec4f, PER_LANE>;
  if (m > NEG_HALF) {
    for (var j = 0u; j < it.rowCount; j++) {
      let slot = blockIndices[it.rowBegin + j];
      let own = slot == it.partialBase;
      var slotLse = ownLse;
      if (!own) { slotLse = partialLse[slot * heads + h]; }
      let w = exp(slotLse - m);
      total += w;
      for (var v = 0u; v < PER_LANE; v++) {
        var slotO = ownO[v];
        if (!own) { slotO = partialO[(slot * heads + h) * D4 + l + v * LANES]; }
        o[v] += w * slotO;
      }
    }
  }
  let nonEmpty = total > 0.0;
  for (var v = 0u; v < PER_LANE; v++) { out[(seq * heads + h) * D4 + l + v * LANES] = select(vec4f(0.0), o[v] / total, nonEmpty); }
  if (l == 0u) { lse[seq * heads + h] = select(MINUS_INFINITY, bitcast<u32>(m + log(total)), nonEmpty); }
}
`
