/**
 * What the level and decode kernels share: the work-item record built on the
 * CPU by `schedule.ts` (8 u32 words per item), the run-time shape parameters,
 * and their bindings (the host binds both kernels the same way).
 */
import { wgsl } from "../gpu/resources.ts"
import { kvPoolReadWgsl, type KvStorage } from "./kvStorage.ts"

export const WORK_ITEM_WORDS = 8

export const WORK_ITEM_WGSL = wgsl`
struct WorkItem {
  tableOffset: u32,  // first block of the node's block table in blockIndices
  startSlot: u32,    // slot of the node's token 0 in its first block
  tokenBegin: u32,   // chunk of the node's tokens: [tokenBegin, tokenEnd)
  tokenEnd: u32,
  entryBase: u32,    // entries[entryBase + e] = (sequence, kv limit) of the node's entry e
  rowBegin: u32,     // level: stacked rows [rowBegin, rowBegin + rowCount), row = entry * GROUP + head in group;
  rowCount: u32,     // decode: the sequence's partial slots blockIndices[rowBegin ..< rowBegin + rowCount) to merge, none: 0
  partialBase: u32,  // entry e writes partial slot partialBase + e
}
`

/**
 * Shape values read at run time, so one compiled pipeline serves every head
 * count, block size and scale. The bound pools are one shard: KV heads
 * [headBase, headBase + poolHeads) laid out [block][slot][poolHeads][headDim].
 */
export const ATTENTION_PARAMS_WGSL = wgsl`
struct AttentionParams {
  heads: u32,
  kvHeads: u32,
  group: u32,
  blockSize: u32,
  scale: f32,
  poolHeads: u32,
  headBase: u32,
}
`

/** Words of AttentionParams, in order (the uniform is padded to 16 bytes). */
export const ATTENTION_PARAM_WORDS = 7

/**
 * Both kernels' bindings and the finite stand-in for −∞ (WGSL may assume no
 * infinities occur). The pools are read through `loadK(i)` / `loadV(i)` (vec4
 * i of the bound shard as vec4f) in the storage of the kernel's spec; q, the
 * partial states and all arithmetic stay f32.
 */
export const attentionIoWgsl = (kv: KvStorage): string => wgsl`
const NEG: f32 = -1e30;
const NEG_HALF: f32 = -5e29;
${WORK_ITEM_WGSL}
${ATTENTION_PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> items: array<WorkItem>;
@group(0) @binding(1) var<storage, read> blockIndices: array<u32>;
@group(0) @binding(2) var<storage, read> entries: array<vec2u>;
@group(0) @binding(3) var<storage, read> q: array<vec4f>;
${kvPoolReadWgsl(kv, 4, 5)}
@group(0) @binding(6) var<storage, read_write> partialO: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> partialLse: array<f32>;
@group(0) @binding(8) var<uniform> params: AttentionParams;

var<workgroup> item: WorkItem;
`

/** Storage buffers the decode kernel binds with the merge fused in: the nine above but the uniform, then out and lse. */
export const FUSED_DECODE_STORAGE_BUFFERS = 10

/** The merge's outputs, bound to the decode kernel that merges (bindings 9 and 10): as in mergeStates.wgsl.ts. */
export const FUSED_MERGE_OUTPUTS_WGSL = wgsl`
const MINUS_INFINITY: u32 = 0xff800000u;
@group(0) @binding(9) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(10) var<storage, read_write> lse: array<u32>;
`
