/**
 * The attention scheduler against its simple definition: one pass per node
 * building fresh arrays (how Canopy scheduled before the scheduler kept its
 * arrays across plans). One scheduler serves a run of random plans that grow
 * and shrink, and every schedule must equal the definition's for that plan:
 * nothing of an earlier, larger plan may leak into a later one.
 */
import fc from "fast-check"
import type { LevelPlan } from "@canopy/tree-cache"
import { describe, expect, it } from "vitest"
import { AttentionScheduler, itemGrid, MAX_GROUPS_PER_DIMENSION, type ScheduleOptions } from "../src/attention/schedule.ts"
import { WORK_ITEM_WORDS } from "../src/attention/workItem.wgsl.ts"
import { arbitraryCase, buildCase, type CaseBounds } from "./attention-fixtures.ts"

interface Definition {
  readonly blockIndices: Array<number>
  readonly entries: Array<number>
  readonly tileItems: Array<number>
  readonly decodeItems: Array<number>
  readonly numPartials: number
  readonly seqPartialIndptr: Array<number>
  readonly seqPartials: Array<number>
  readonly chunkTokens: number
  readonly mergeFused: boolean
}

/** The schedule by its definition (see schedule.ts for what each field means). */
const definition = (plan: LevelPlan, o: ScheduleOptions): Definition => {
  const blockIndices: Array<number> = []
  const entries: Array<number> = []
  const nodes: Array<{ tableOffset: number; startSlot: number; entryBase: number; sequences: Array<number>; visible: Array<number> }> = []
  for (const level of plan.levels) {
    const blockBase = blockIndices.length
    const entryBase = entries.length / 2
    blockIndices.push(...level.blockIndices)
    level.queryIndices.forEach((s, k) => entries.push(s, level.queryKvLimit?.[k] ?? 0xffffffff))
    for (let n = 0; n < level.nodeIds.length; n++) {
      const ks = Array.from({ length: level.queryIndptr[n + 1]! - level.queryIndptr[n]! }, (_, e) => level.queryIndptr[n]! + e)
      nodes.push({
        tableOffset: blockBase + level.blockIndptr[n]!,
        startSlot: level.startSlot[n]!,
        entryBase: entryBase + level.queryIndptr[n]!,
        sequences: ks.map((k) => level.queryIndices[k]!),
        visible: ks.map((k) => Math.min(level.length[n]!, level.queryKvLimit?.[k] ?? Infinity))
      })
    }
  }
  const decode = (node: (typeof nodes)[number]) => node.visible.length <= o.decodeMaxEntries
  let work = 0
  for (const node of nodes) {
    work += decode(node)
      ? node.visible.reduce((a, b) => a + b, 0)
      : Math.max(0, ...node.visible) * Math.ceil((node.visible.length * o.group) / o.tileRows)
  }
  const chunkTokens = Math.ceil(Math.max(o.minChunkTokens, Math.ceil((work * o.kvHeads) / o.targetWorkgroups)) / 32) * 32
  const tileItems: Array<number> = []
  const decodeItems: Array<number> = []
  const slotsOf: Array<Array<number>> = Array.from({ length: plan.numSequences }, () => [])
  // decode items' sequences, in order: where each sequence has exactly one (and fusing is allowed), the items merge
  const decodeSequences: Array<number> = []
  let numPartials = 0
  for (const node of nodes) {
    if (decode(node)) {
      node.visible.forEach((visible, e) => {
        for (let t0 = 0; t0 < visible; t0 += chunkTokens) {
          const slot = numPartials++
          slotsOf[node.sequences[e]!]!.push(slot)
          decodeSequences.push(node.sequences[e]!)
          decodeItems.push(node.tableOffset, node.startSlot, t0, Math.min(visible, t0 + chunkTokens), node.entryBase + e, 0, 0, slot)
        }
      })
      continue
    }
    const span = Math.max(0, ...node.visible)
    const rows = node.visible.length * o.group
    for (let t0 = 0; t0 < span; t0 += chunkTokens) {
      const base = numPartials
      numPartials += node.visible.length
      node.visible.forEach((visible, e) => visible > t0 && slotsOf[node.sequences[e]!]!.push(base + e))
      for (let r0 = 0; r0 < rows; r0 += o.tileRows) {
        tileItems.push(node.tableOffset, node.startSlot, t0, Math.min(span, t0 + chunkTokens), node.entryBase, r0, Math.min(o.tileRows, rows - r0), base)
      }
    }
  }
  const seqPartialIndptr = [0]
  for (const slots of slotsOf) seqPartialIndptr.push(seqPartialIndptr.at(-1)! + slots.length)
  const seqPartials = slotsOf.flat()
  const once = Array.from({ length: plan.numSequences }, (_, s) => decodeSequences.filter((d) => d === s).length === 1)
  const mergeFused = o.fuseMerge && plan.numSequences > 0 && once.every(Boolean)
  if (mergeFused) {
    // each decode item points at its sequence's slots, appended to the block indices
    decodeSequences.forEach((s, i) => {
      decodeItems[i * WORK_ITEM_WORDS + 5] = blockIndices.length + seqPartialIndptr[s]!
      decodeItems[i * WORK_ITEM_WORDS + 6] = slotsOf[s]!.length
    })
    blockIndices.push(...seqPartials)
  }
  return { blockIndices, entries, tileItems, decodeItems, numPartials, seqPartialIndptr, seqPartials, chunkTokens, mergeFused }
}

const BOUNDS: CaseBounds = {
  maxDepth: 5,
  maxFanOut: 6,
  maxNodes: 16,
  maxLength: 400,
  maxSequences: 24,
  maxWork: Infinity,
  causal: true,
  // the schedule does not depend on the head dim; the smallest keeps building the cases' K/V quick
  headDims: [8]
}

/** One scheduler's options for a run, as the attention objects set them (hydragen, level kernel only, baseline). */
const arbitraryOptions = fc.record({
  group: fc.constantFrom(1, 2, 4, 8),
  kvHeads: fc.integer({ min: 1, max: 8 }),
  tileRows: fc.constantFrom(1, 8, 16, 32, 64),
  decodeMaxEntries: fc.constantFrom(0, 1, 2, Infinity),
  targetWorkgroups: fc.constantFrom(1, 16, 64, 1024),
  minChunkTokens: fc.constantFrom(1, 32, 64),
  fuseMerge: fc.boolean()
})

describe("AttentionScheduler", () => {
  it("equals the definition on every plan of a run of random plans, one scheduler throughout", () => {
    fc.assert(
      fc.property(arbitraryOptions, fc.array(arbitraryCase(BOUNDS), { minLength: 2, maxLength: 8 }), (options, specs) => {
        const scheduler = new AttentionScheduler(options)
        for (const spec of specs) {
          const plan = buildCase(spec).plan
          const want = definition(plan, options)
          const got = scheduler.schedule(plan)
          expect(got.numSequences).toBe(plan.numSequences)
          expect(got.chunkTokens).toBe(want.chunkTokens)
          expect(got.mergeFused).toBe(want.mergeFused)
          expect(got.numPartials).toBe(want.numPartials)
          expect(Array.from(got.blockIndices)).toEqual(want.blockIndices)
          expect(Array.from(got.entries)).toEqual(want.entries)
          expect(Array.from(got.seqPartialIndptr)).toEqual(want.seqPartialIndptr)
          expect(Array.from(got.seqPartials)).toEqual(want.seqPartials)
          // small plans fit one grid row: no padding
          expect(Array.from(got.tileItems.words)).toEqual(want.tileItems)
          expect(Array.from(got.decodeItems.words)).toEqual(want.decodeItems)
          expect(got.tileItems.count).toBe(want.tileItems.length / WORK_ITEM_WORDS)
          expect(got.decodeItems.count).toBe(want.decodeItems.length / WORK_ITEM_WORDS)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("pads a plan with more items than one grid dimension holds with items that attend nothing", () => {
    // 70,001 single-token sequences on their own roots: one decode item each, on a 35,001 × 2 grid
    const n = 70_001
    const plan: LevelPlan = {
      blockSize: 1,
      numSequences: n,
      levels: [{
        depth: 0,
        nodeIds: Int32Array.from({ length: n }, (_, i) => i),
        length: new Uint32Array(n).fill(1),
        startSlot: new Uint32Array(n),
        blockIndptr: Uint32Array.from({ length: n + 1 }, (_, i) => i),
        blockIndices: Uint32Array.from({ length: n }, (_, i) => i),
        queryIndptr: Uint32Array.from({ length: n + 1 }, (_, i) => i),
        queryIndices: Uint32Array.from({ length: n }, (_, i) => i),
        queryOffset: 0
      }],
      numPartials: n,
      seqPartialIndptr: Uint32Array.from({ length: n + 1 }, (_, i) => i),
      seqPartials: Uint32Array.from({ length: n }, (_, i) => i),
      pathIndptr: Uint32Array.from({ length: n + 1 }, (_, i) => i),
      pathNodes: Int32Array.from({ length: n }, (_, i) => i),
      seqLength: new Uint32Array(n).fill(1)
    }
    const options = { group: 1, kvHeads: 1, tileRows: 64, decodeMaxEntries: 1, targetWorkgroups: 1024, minChunkTokens: 64, fuseMerge: false }
    const got = new AttentionScheduler(options).schedule(plan)
    const [x, y] = got.decodeItems.grid
    expect([x, y]).toEqual([35_001, 2])
    expect(got.decodeItems.count).toBe(n)
    expect(got.decodeItems.words.length).toBe((n + 1) * WORK_ITEM_WORDS)
    expect(Array.from(got.decodeItems.words.subarray(0, n * WORK_ITEM_WORDS))).toEqual(definition(plan, options).decodeItems)
    // no tokens, and its empty state goes to the spare slot past the merged ones
    expect(Array.from(got.decodeItems.words.subarray(n * WORK_ITEM_WORDS))).toEqual([0, 0, 0, 0, 0, 0, 0, n])
    expect(got.numPartials).toBe(n)
    expect(got.tileItems.grid).toEqual([0, 0])
  })

  it("grids hold every item, at most one dimension's limit wide, padding fewer items than rows", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 1, max: 200_000 }), fc.integer({ min: 1, max: 2 ** 31 })), (count) => {
        const [x, y] = itemGrid(count)
        expect(x * y).toBeGreaterThanOrEqual(count)
        expect(x * y - count).toBeLessThan(y)
        expect(x).toBeLessThanOrEqual(MAX_GROUPS_PER_DIMENSION)
        expect(y).toBeLessThanOrEqual(MAX_GROUPS_PER_DIMENSION)
        if (count <= MAX_GROUPS_PER_DIMENSION) expect([x, y]).toEqual([count, 1])
      })
    )
    expect(itemGrid(0)).toEqual([0, 0])
  })
})
