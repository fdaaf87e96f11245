/**
 * The CPU half of the plan/run split: turns a LevelPlan into flat work-item
 * lists for the level and decode kernels, the (sequence, kv limit) entries
 * they read, and the CSR of partial slots the merge combines. Built once per
 * plan, reused by every layer's dispatches.
 *
 * A node whose KV is long compared with the total work is split into chunks of
 * `chunkTokens` tokens so the dispatch has enough workgroups; every (entry,
 * chunk) owns one partial slot (all heads), which the merge folds back.
 *
 * Where every sequence ends on exactly one decode item (its own leaf, in one
 * chunk: the steady state of sampling), and the options allow it, that item
 * merges the sequence's states itself (the merge fused into the decode
 * kernel): it carries the sequence's partial slots, appended to the block
 * indices, and the plan needs no merge pass.
 *
 * The scheduler runs every decoding step, so it allocates nothing per plan:
 * three passes over the plan's entries (size the chunks, count each
 * sequence's slots, fill) write into arrays it keeps and grows
 * geometrically, and the schedule it returns views them.
 */
import type { LevelPlan, LevelPlanLevel } from "@canopy/tree-cache"
import { WORK_ITEM_WORDS } from "./workItem.wgsl.ts"

/** kv limit of an entry with none: every token of its node */
const NO_LIMIT = 0xffffffff

/** chunk lengths are multiples of this: whole K/V tiles of both kernels */
const CHUNK_ALIGN = 32

/** WebGPU's bound on workgroups per grid dimension */
export const MAX_GROUPS_PER_DIMENSION = 65535

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
  /** whether a plan whose sequences each end on one decode item may have those items merge (the decode kernel built for it) */
  readonly fuseMerge: boolean
}

/**
 * A grid of workgroups `[x, y]` the kernels flatten as index = wx + wy·x:
 * exactly `count` when it fits one dimension, otherwise fewer than y more.
 */
export const itemGrid = (count: number): readonly [number, number] => {
  if (count === 0) return [0, 0]
  const y = Math.ceil(count / MAX_GROUPS_PER_DIMENSION)
  return [Math.ceil(count / y), y]
}

/**
 * Work items padded to their grid: the kernels bound-check the index against
 * the bound buffer, which holds items of earlier, larger plans past the end,
 * so every workgroup of the grid must find an item of this plan. A padding
 * item has no rows and no tokens (the level kernel writes nothing for it; the
 * decode kernel writes an empty state into the spare slot `numPartials`).
 */
export interface ScheduledItems {
  /** `[x·y][WORK_ITEM_WORDS]`, padding included */
  readonly words: Uint32Array
  /** items of the plan, padding excluded */
  readonly count: number
  readonly grid: readonly [number, number]
}

/** Views into the scheduler's arrays: valid until its next `schedule` call. */
export interface AttentionSchedule {
  readonly numSequences: number
  /** every level's block tables, concatenated; where the merge is fused, then seqPartials */
  readonly blockIndices: Uint32Array
  /** (sequence, kv limit) per plan entry, levels concatenated */
  readonly entries: Uint32Array
  readonly tileItems: ScheduledItems
  readonly decodeItems: ScheduledItems
  /** partial slots the merge reads; slot `numPartials` is the spare the decode padding writes */
  readonly numPartials: number
  readonly seqPartialIndptr: Uint32Array
  readonly seqPartials: Uint32Array
  readonly chunkTokens: number
  /**
   * Each sequence's decode item merges its states (into the call's out and
   * lse): its rowBegin, rowCount are the sequence's slots in blockIndices.
   * Otherwise decode items have rowCount 0 and the merge pass runs.
   */
  readonly mergeFused: boolean
}

/** A Uint32Array kept across plans: grown geometrically, contents rewritten each plan. */
class Words {
  data = new Uint32Array(64)
  length = 0
  /** Empties it and makes room for `n` words. */
  reset(n: number): void {
    this.length = 0
    this.reserve(n)
  }
  view(): Uint32Array {
    return this.data.subarray(0, this.length)
  }
  /** Appends `words`, growing (and keeping what it holds) as needed. */
  append(words: Uint32Array): void {
    this.reserve(this.length + words.length)
    this.data.set(words, this.length)
    this.length += words.length
  }
  /** Room for `n` words, what it holds kept. */
  private reserve(n: number): void {
    if (n <= this.data.length) return
    const grown = new Uint32Array(Math.max(n, Math.ceil(this.data.length * 1.5)))
    grown.set(this.view())
    this.data = grown
  }
}

const visibleOf = (level: LevelPlanLevel, n: number, k: number): number => {
  const length = level.length[n]!
  const limit = level.queryKvLimit?.[k]
  return limit === undefined ? length : Math.min(length, limit)
}

const spanOf = (level: LevelPlanLevel, n: number): number => {
  let span = 0
  for (let k = level.queryIndptr[n]!; k < level.queryIndptr[n + 1]!; k++) span = Math.max(span, visibleOf(level, n, k))
  return span
}

const chunksOf = (tokens: number, chunkTokens: number): number => Math.ceil(tokens / chunkTokens)

export class AttentionScheduler {
  private readonly blockIndices = new Words()
  private readonly entries = new Words()
  private readonly tileItems = new Words()
  private readonly decodeItems = new Words()
  private readonly seqPartialIndptr = new Words()
  private readonly seqPartials = new Words()
  /** per sequence: its next free position in seqPartials */
  private readonly cursor = new Words()
  /** per sequence: its decode items */
  private readonly decodeItemsOf = new Words()

  constructor(readonly options: ScheduleOptions) {}

  schedule(plan: LevelPlan): AttentionSchedule {
    this.copyPlan(plan)
    const chunkTokens = this.chunkTokensFor(plan)
    const counts = this.countSlots(plan, chunkTokens)
    const mergeFused = this.mergesInDecode(plan.numSequences)
    const tileGrid = itemGrid(counts.tileItems)
    const decodeGrid = itemGrid(counts.decodeItems)
    this.tileItems.reset((tileGrid[0] * tileGrid[1]) * WORK_ITEM_WORDS)
    this.decodeItems.reset((decodeGrid[0] * decodeGrid[1]) * WORK_ITEM_WORDS)
    const mergeBase = this.blockIndices.length
    const numPartials = this.fill(plan, chunkTokens, mergeFused ? mergeBase : undefined)
    if (mergeFused) this.blockIndices.append(this.seqPartials.view())
    this.pad(this.tileItems, tileGrid, 0)
    this.pad(this.decodeItems, decodeGrid, numPartials)
    return {
      numSequences: plan.numSequences,
      blockIndices: this.blockIndices.view(),
      entries: this.entries.view(),
      tileItems: { words: this.tileItems.view(), count: counts.tileItems, grid: tileGrid },
      decodeItems: { words: this.decodeItems.view(), count: counts.decodeItems, grid: decodeGrid },
      numPartials,
      seqPartialIndptr: this.seqPartialIndptr.view(),
      seqPartials: this.seqPartials.view(),
      chunkTokens,
      mergeFused
    }
  }

  /** Whether the options allow the fused merge and each of the plan's sequences has exactly one decode item. */
  private mergesInDecode(sequences: number): boolean {
    if (!this.options.fuseMerge || sequences === 0) return false
    const items = this.decodeItemsOf.data
    for (let s = 0; s < sequences; s++) if (items[s] !== 1) return false
    return true
  }

  private usesDecode(level: LevelPlanLevel, n: number): boolean {
    return level.queryIndptr[n + 1]! - level.queryIndptr[n]! <= this.options.decodeMaxEntries
  }

  /** Every level's block tables and entries, concatenated. */
  private copyPlan(plan: LevelPlan): void {
    let blocks = 0
    let entries = 0
    for (const level of plan.levels) {
      blocks += level.blockIndices.length
      entries += level.queryIndices.length
    }
    this.blockIndices.reset(blocks)
    this.entries.reset(2 * entries)
    const b = this.blockIndices.data
    const e = this.entries.data
    for (const level of plan.levels) {
      b.set(level.blockIndices, this.blockIndices.length)
      this.blockIndices.length += level.blockIndices.length
      const limits = level.queryKvLimit
      let at = this.entries.length
      for (let k = 0; k < level.queryIndices.length; k++) {
        e[at++] = level.queryIndices[k]!
        e[at++] = limits === undefined ? NO_LIMIT : limits[k]!
      }
      this.entries.length = at
    }
  }

  /** tokens × workgroups before chunking, sized so the pass has about targetWorkgroups */
  private chunkTokensFor(plan: LevelPlan): number {
    const { group, tileRows, kvHeads, targetWorkgroups, minChunkTokens } = this.options
    let work = 0
    for (const level of plan.levels) {
      for (let n = 0; n < level.nodeIds.length; n++) {
        const begin = level.queryIndptr[n]!
        const end = level.queryIndptr[n + 1]!
        if (this.usesDecode(level, n)) for (let k = begin; k < end; k++) work += visibleOf(level, n, k)
        else work += spanOf(level, n) * Math.ceil(((end - begin) * group) / tileRows)
      }
    }
    const wanted = Math.ceil((work * kvHeads) / targetWorkgroups)
    return Math.ceil(Math.max(minChunkTokens, wanted) / CHUNK_ALIGN) * CHUNK_ALIGN
  }

  /** Items of each kernel, and each sequence's partial slots as the CSR offsets (cursor: where each sequence's slots start). */
  private countSlots(plan: LevelPlan, chunkTokens: number): { readonly tileItems: number; readonly decodeItems: number } {
    const sequences = plan.numSequences
    this.seqPartialIndptr.reset(sequences + 1)
    this.seqPartialIndptr.length = sequences + 1
    const indptr = this.seqPartialIndptr.data
    indptr.fill(0, 0, sequences + 1)
    // each sequence's decode items, counted only where the merge may fuse
    if (this.options.fuseMerge) this.decodeItemsOf.reset(sequences)
    const decodeOf = this.options.fuseMerge ? this.decodeItemsOf.data.fill(0, 0, sequences) : undefined
    let tileItems = 0
    let decodeItems = 0
    for (const level of plan.levels) {
      for (let n = 0; n < level.nodeIds.length; n++) {
        const begin = level.queryIndptr[n]!
        const end = level.queryIndptr[n + 1]!
        for (let k = begin; k < end; k++) {
          const chunks = chunksOf(visibleOf(level, n, k), chunkTokens)
          indptr[level.queryIndices[k]! + 1]! += chunks
          if (this.usesDecode(level, n)) {
            decodeItems += chunks
            if (decodeOf !== undefined) decodeOf[level.queryIndices[k]!]! += chunks
          }
        }
        if (!this.usesDecode(level, n)) {
          tileItems += chunksOf(spanOf(level, n), chunkTokens) * Math.ceil(((end - begin) * this.options.group) / this.options.tileRows)
        }
      }
    }
    for (let s = 0; s < sequences; s++) indptr[s + 1]! += indptr[s]!
    this.cursor.reset(sequences)
    this.cursor.data.set(indptr.subarray(0, sequences))
    this.seqPartials.reset(indptr[sequences]!)
    this.seqPartials.length = indptr[sequences]!
    return { tileItems, decodeItems }
  }

  /**
   * Writes the items and every sequence's slots, in plan order (a sequence's
   * slots root → leaf); returns the slots used. With `mergeBase` (the fused
   * merge), a decode item points at its sequence's slots as they will stand
   * in blockIndices, from there.
   */
  private fill(plan: LevelPlan, chunkTokens: number, mergeBase: number | undefined): number {
    const { tileRows } = this.options
    const indptr = this.seqPartialIndptr.data
    const cursor = this.cursor.data
    const slots = this.seqPartials.data
    let numPartials = 0
    let blockBase = 0
    let entryBase = 0
    for (const level of plan.levels) {
      for (let n = 0; n < level.nodeIds.length; n++) {
        const begin = level.queryIndptr[n]!
        const end = level.queryIndptr[n + 1]!
        const tableOffset = blockBase + level.blockIndptr[n]!
        const startSlot = level.startSlot[n]!
        if (this.usesDecode(level, n)) {
          for (let k = begin; k < end; k++) {
            const visible = visibleOf(level, n, k)
            const seq = level.queryIndices[k]!
            for (let t0 = 0; t0 < visible; t0 += chunkTokens) {
              const slot = numPartials++
              slots[cursor[seq]!++] = slot
              const mergeBegin = mergeBase === undefined ? 0 : mergeBase + indptr[seq]!
              const mergeCount = mergeBase === undefined ? 0 : indptr[seq + 1]! - indptr[seq]!
              push(this.decodeItems, tableOffset, startSlot, t0, Math.min(visible, t0 + chunkTokens), entryBase + k, mergeBegin, mergeCount, slot)
            }
          }
          continue
        }
        const span = spanOf(level, n)
        const rows = (end - begin) * this.options.group
        for (let t0 = 0; t0 < span; t0 += chunkTokens) {
          const base = numPartials
          numPartials += end - begin
          // an entry that sees none of this chunk writes an empty state nobody merges
          for (let k = begin; k < end; k++) {
            if (visibleOf(level, n, k) > t0) slots[cursor[level.queryIndices[k]!]!++] = base + k - begin
          }
          const t1 = Math.min(span, t0 + chunkTokens)
          for (let r0 = 0; r0 < rows; r0 += tileRows) {
            push(this.tileItems, tableOffset, startSlot, t0, t1, entryBase + begin, r0, Math.min(tileRows, rows - r0), base)
          }
        }
      }
      blockBase += level.blockIndices.length
      entryBase += level.queryIndices.length
    }
    return numPartials
  }

  /** Fills the grid's spare workgroups with items that attend nothing; decode padding writes `spareSlot`. */
  private pad(items: Words, grid: readonly [number, number], spareSlot: number): void {
    const end = grid[0] * grid[1] * WORK_ITEM_WORDS
    items.data.fill(0, items.length, end)
    for (let at = items.length; at < end; at += WORK_ITEM_WORDS) items.data[at + 7] = spareSlot
    items.length = end
  }
}

/** One work item (see WORK_ITEM_WGSL); the caller reserved the room. */
const push = (
  items: Words, tableOffset: number, startSlot: number, tokenBegin: number, tokenEnd: number,
  entryBase: number, rowBegin: number, rowCount: number, partialBase: number
): void => {
  const d = items.data
  let at = items.length
  d[at++] = tableOffset
  d[at++] = startSlot
  d[at++] = tokenBegin
  d[at++] = tokenEnd
  d[at++] = entryBase
  d[at++] = rowBegin
  d[at++] = rowCount
  d[at++] = partialBase
  items.length = at
}
