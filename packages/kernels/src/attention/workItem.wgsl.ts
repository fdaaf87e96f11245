/**
 * Records shared by the level and decode kernels. The work-item record shared by the level and decode kernels and built on the
 * CPU by `schedule.ts` (8 u32 words per item).
 */
import { wgsl } from "../gpu/resources.ts"

export const WORK_ITEM_WORDS = 8

export const WORK_ITEM_WGSL = wgsl`
struct WorkItem {
  tableOffset: u32,  // first block of the node's block table in blockIndices
  startSlot: u32,    // slot of the node's token 0 in its first block
  tokenBegin: u32,   // chunk of the node's tokens: [tokenBegin, tokenEnd)
  tokenEnd: u32,
  entryBase: u32,    // entries[entryBase + e] = (sequence, kv limit) of the node's entry e
  rowBegin: u32,     // stacked rows [rowBegin, rowBegin + rowCount), row = entry * GROUP + head in group
  rowCount: u32,
  partialBase: u32,  // entry e writes partial slot partialBase + e
}
`

/** Shape values read at run time, so one compiled pipeline serves every head count, block size and scale. */
export const ATTENTION_PARAMS_WGSL = wgsl`
struct AttentionParams {
  heads: u32,
  kvHeads: u32,
  group: u32,
  blockSize: u32,
  scale: f32,
}
`
