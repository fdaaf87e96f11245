/**
 * The CPU half of the plan/run split: turns a LevelPlan into flat work-item
 * lists for the level and decode kernels, the (sequence, kv limit) entries
 * they read, and the CSR of partial slots the merge combines. Built once per
 * plan, reused by every layer's dispatches.
 *
 * A node whose KV is long compared with the total work is split into chunks of
 * `chunkTokens` tokens so the dispatch has enough workgroups; every (entry,
 * chunk) owns one partial slot (all heads), which the merge folds back.
 */
import type { LevelPlan } from "@canopy/tree-cache"
import { WORK_ITEM_WORDS } from "./workItem.wgsl.ts"

/** kv limit of an entry with none: every token of its node */
const NO_LIMIT = 0xffffffff

/** chunk lengths are multiples of this: whole K/V tiles of both kernels */
const CHUNK_ALIGN = 32

export interface ScheduleOptions {
  /** query heads per KV head */
  readonly group: number
  readonly kvHeads: number
  /** stacked rows per level-kernel workgroup */
  readonly tileRows: number
  /** nodes with at most this many entries go to the decode kernel, one workgroup per entry */
  readonly decodeMaxEntries: number
  /** workgroups one attention pass should have to fill the device */
  readonly targetWorkgroups: number
  /** chunks are never shorter than this (a chunk costs a partial state and a merge term) */
  readonly minChunkTokens: number
}

export interface AttentionSchedule {
  readonly numSequences: number
  /** every level's block tables, concatenated */
  readonly blockIndices: Uint32Array
  /** (sequence, kv limit) per plan entry, levels concatenated */
  readonly entries: Uint32Array
  readonly tileItems: Uint32Array
  readonly decodeItems: Uint32Array
  readonly numPartials: number
  readonly seqPartialIndptr: Uint32Array
  readonly seqPartials: Uint32Array
  readonly chunkTokens: number
}

class U32Builder {
  private data = new Uint32Array(64)
  length = 0
  push(...words: ReadonlyArray<number>): void {
    if (this.length + words.length > this.data.length) {
      const grown = new Uint32Array(Math.max(this.data.length * 2, this.length + words.length))
      grown.set(this.data)
      this.data = grown
    }
    for (const w of words) this.data[this.length++] = w
  }
  finish(): Uint32Array {
    return this.data.slice(0, this.length)
  }
}

interface NodeVisit {
  readonly tableOffset: number
  readonly startSlot: number
  /** global index of the node's first entry */
  readonly entryBase: number
  /** per entry: sequence and visible tokens */
  readonly sequences: ArrayLike<number>
  readonly visible: ReadonlyArray<number>
}

const visitNodes = (plan: LevelPlan, blockIndices: U32Builder, entries: U32Builder): Array<NodeVisit> => {
  const visits: Array<NodeVisit> = []
  for (const level of plan.levels) {
    const blockBase = blockIndices.length
    const entryBase = entries.length / 2
    for (const b of level.blockIndices) blockIndices.push(b)
    for (let k = 0; k < level.queryIndices.length; k++) {
      entries.push(level.queryIndices[k]!, level.queryKvLimit?.[k] ?? NO_LIMIT)
    }
    for (let n = 0; n < level.nodeIds.length; n++) {
      const begin = level.queryIndptr[n]!
      const end = level.queryIndptr[n + 1]!
      const length = level.length[n]!
      const visible: Array<number> = []
      for (let k = begin; k < end; k++) visible.push(Math.min(length, level.queryKvLimit?.[k] ?? length))
      visits.push({
        tableOffset: blockBase + level.blockIndptr[n]!,
        startSlot: level.startSlot[n]!,
        entryBase: entryBase + begin,
        sequences: level.queryIndices.subarray(begin, end),
        visible
      })
    }
  }
  return visits
}

const maxOf = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => Math.max(a, b), 0)

const usesDecode = (visit: NodeVisit, options: ScheduleOptions): boolean =>
  visit.visible.length <= options.decodeMaxEntries

export const scheduleAttention = (plan: LevelPlan, options: ScheduleOptions): AttentionSchedule => {
  const blockIndices = new U32Builder()
  const entries = new U32Builder()
  const visits = visitNodes(plan, blockIndices, entries)
  const { group, tileRows } = options

  // tokens × workgroups before chunking, to size chunks for the target
  let work = 0
  for (const visit of visits) {
    if (usesDecode(visit, options)) for (const v of visit.visible) work += v
    else work += maxOf(visit.visible) * Math.ceil((visit.visible.length * group) / tileRows)
  }
  const wanted = Math.ceil((work * options.kvHeads) / options.targetWorkgroups)
  const chunkTokens = Math.ceil(Math.max(options.minChunkTokens, wanted) / CHUNK_ALIGN) * CHUNK_ALIGN

  const tileItems = new U32Builder()
  const decodeItems = new U32Builder()
  const seqSlots: Array<Array<number>> = Array.from({ length: plan.numSequences }, () => [])
  let numPartials = 0
  for (const visit of visits) {
    if (usesDecode(visit, options)) {
      visit.visible.forEach((visible, e) => {
        for (let t0 = 0; t0 < visible; t0 += chunkTokens) {
          const slot = numPartials++
          seqSlots[visit.sequences[e]!]!.push(slot)
          decodeItems.push(visit.tableOffset, visit.startSlot, t0, Math.min(visible, t0 + chunkTokens), visit.entryBase + e, 0, group, slot)
        }
      })
    } else {
      const span = maxOf(visit.visible)
      const rows = visit.visible.length * group
      for (let t0 = 0; t0 < span; t0 += chunkTokens) {
        const t1 = Math.min(span, t0 + chunkTokens)
        const base = numPartials
        numPartials += visit.visible.length
        // an entry that sees none of this chunk writes an empty state nobody merges
        visit.visible.forEach((visible, e) => {
          if (visible > t0) seqSlots[visit.sequences[e]!]!.push(base + e)
        })
        for (let r0 = 0; r0 < rows; r0 += tileRows) {
          tileItems.push(visit.tableOffset, visit.startSlot, t0, t1, visit.entryBase, r0, Math.min(tileRows, rows - r0), base)
        }
      }
    }
  }

  const seqPartialIndptr = new Uint32Array(plan.numSequences + 1)
  seqSlots.forEach((slots, s) => (seqPartialIndptr[s + 1] = seqPartialIndptr[s]! + slots.length))
  return {
    numSequences: plan.numSequences,
    blockIndices: blockIndices.finish(),
    entries: entries.finish(),
    tileItems: tileItems.finish(),
    decodeItems: decodeItems.finish(),
    numPartials,
    seqPartialIndptr,
    seqPartials: Uint32Array.from(seqSlots.flat()),
    chunkTokens
  }
}

export const workItemCount = (items: Uint32Array): number => items.length / WORK_ITEM_WORDS
