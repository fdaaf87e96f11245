import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { BlockPool, BlockPoolExhausted } from "../src/BlockPool.ts"
import { LevelPlanner } from "../src/LevelPlanner.ts"
import { planLevels } from "../src/planLevels.ts"
import { type MatchResult, type Placement, PrefixTree, type SeqId, type TreeNode } from "../src/PrefixTree.ts"
import { applyPlacement, checkPlan, checkTree, emptyModel, ensure, occupiedSlots, planExpectations, privateStarts } from "./check.ts"

type Op =
  | { kind: "insert"; base: number; cut: number; extra: number[] }
  | { kind: "fork"; pick: number }
  | { kind: "append"; pick: number; tokens: number[] }
  /**
   * appendPending, then (sibling ≥ 0) another sequence spelling the same
   * tokens and `sibling` more placed before the token is named, then
   * resolvePending or a release (the sample ended before its token was read back)
   */
  | { kind: "pending"; pick: number; token: number; sibling: number; resolve: boolean }
  | { kind: "release"; pick: number }
  | { kind: "lock"; pick: number }
  | { kind: "unlock"; pick: number }
  | { kind: "evict"; blocks: number }

const tokens = (maxLength: number) => fc.array(fc.integer({ min: 0, max: 3 }), { maxLength })

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("insert" as const), base: fc.nat(), cut: fc.nat(), extra: tokens(9) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("fork" as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("append" as const), pick: fc.nat(), tokens: tokens(5) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("pending" as const), pick: fc.nat(), token: fc.nat(), sibling: fc.integer({ min: -1, max: 2 }), resolve: fc.boolean()
    })
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lock" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("unlock" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("evict" as const), blocks: fc.integer({ min: 0, max: 6 }) }) }
)

const scenario = fc.record({
  blockSize: fc.integer({ min: 1, max: 8 }),
  numBlocks: fc.integer({ min: 1, max: 16 }),
  vocab: fc.integer({ min: 1, max: 4 }),
  ops: fc.array(op, { minLength: 1, maxLength: 50, size: "max" })
})

/**
 * Blocks an insert/append of `full` (the sequence's whole token list after the
 * operation) must allocate, derived from positions alone: a copy when the match
 * ends strictly inside a node at a slot ≠ 0, plus the blocks for the rest
 * starting at that slot (less the partly filled block when the end node grows).
 * An append that leaves an unlocked cached leaf midway takes that leaf over
 * instead: no copy, the leaf cut where the match ends (`freed`: the blocks past
 * the cut) and grown from there.
 */
function expectedAsk(
  tree: PrefixTree, m: MatchResult, full: number[], own: TreeNode | undefined
): { asked: number; freed: number; takenOver?: TreeNode } {
  const bs = tree.blockSize
  const rest = full.length - m.length
  const r = m.length % bs
  const inside = m.inNode < m.node.length
  if (own !== undefined && inside && m.node.children.size === 0 && m.node.lockRef === 0) {
    const freed = m.node.blocks.length - Math.ceil((m.node.startSlot + m.inNode) / bs)
    const tail = rest === 0 ? 0 : Math.ceil((r + rest) / bs) - (r !== 0 ? 1 : 0)
    return { asked: tail, freed, takenOver: m.node }
  }
  const grows =
    !inside && rest > 0 && m.node !== tree.root && m.node.children.size === 0 &&
    m.node.lockRef === (m.node === own ? 1 : 0)
  const copy = inside && r !== 0 ? 1 : 0
  const tail = rest === 0 ? 0 : Math.ceil((r + rest) / bs) - (grows && r !== 0 ? 1 : 0)
  return { asked: copy + tail, freed: 0 }
}

/**
 * What an append of `tokens` to `seq` follows: cached children from the
 * sequence's own end (which a match from the root does not reach when the path
 * has a private node), as a MatchResult over the whole sequence.
 */
function matchAfter(tree: PrefixTree, seq: SeqId, tokens: ReadonlyArray<number>): MatchResult {
  let node = tree.sequence(seq).end
  let length = tree.lengthOf(seq)
  let inNode = node.length
  let i = 0
  while (i < tokens.length) {
    const child = node.children.get(tokens[i]!)
    if (child === undefined) break
    node = child
    inNode = 0
    while (inNode < child.length && i < tokens.length && child.tokens[inNode] === tokens[i]) {
      inNode++
      i++
    }
    length += inNode
    if (inNode < child.length) break
  }
  return { node, inNode, length }
}

/** Runs the operations, checking everything after each; says whether exhaustion and eviction occurred. */
function run(s: { blockSize: number; numBlocks: number; vocab: number; ops: Op[] }): {
  exhausted: boolean; evicted: boolean; keptPrivate: boolean; moved: boolean; refreshedGrown: number
} {
  const { blockSize, numBlocks, vocab } = s
  const tree = new PrefixTree(new BlockPool({ numBlocks, blockSize }))
  // plans the live sequences after every operation, as the engine's steps do: refreshed where the paths are the same
  const planner = new LevelPlanner()
  let refreshedGrown = 0
  let lengthsBefore: Array<number> = []
  const model = emptyModel()
  const history: number[][] = []
  let exhausted = false
  let evicted = false
  let keptPrivate = false
  let moved = false

  for (const o of s.ops) {
    const liveIds = [...model.live.keys()]
    const pickLive = (n: number): SeqId | undefined => liveIds[n % Math.max(1, liveIds.length)]
    const lockedBefore = [...tree.nodes()].filter((n) => n.lockRef > 0)
    const occupiedBefore = occupiedSlots(tree)
    const freeBefore = tree.pool.free
    const nodesBefore = [...tree.nodes()]
    const usedBefore = tree.pool.used
    let dropped: TreeNode | undefined
    // Blocks the operation allocated: the growth in use plus what its evictions gave back.
    const allocated = () =>
      tree.pool.used - usedBefore + nodesBefore.filter((n) => n.evicted).reduce((a, n) => a + n.blocks.length, 0)

    const checkPlacement = (p: Placement, full: number[], previousLength: number, takenOver?: TreeNode) => {
      expect(p.length).toBe(full.length)
      expect(p.newStart).toBeGreaterThanOrEqual(previousLength)
      expect(p.newStart).toBeLessThanOrEqual(full.length)
      expect(p.newBlocks.length).toBe(full.length - p.newStart)
      // New KV never lands on a slot that holds a token of a node still in the tree.
      for (let i = 0; i < p.newBlocks.length; i++) {
        ensure(p.newSlots[i] === (p.newStart + i) % blockSize, () => `new position ${p.newStart + i} at slot ${p.newSlots[i]}`)
        const holder = occupiedBefore.get(p.newBlocks[i]! * blockSize + p.newSlots[i]!)
        // A leaf taken over is written past its cut, over the tail it dropped.
        ensure(holder === undefined || holder.evicted || holder === takenOver, () => `new KV overwrites a token of node ${holder?.id}`)
      }
      for (const c of p.copies) {
        expect(0 <= c.fromSlot && c.fromSlot < c.toSlot && c.toSlot <= blockSize).toBe(true)
        expect(c.src).not.toBe(c.dst)
      }
      applyPlacement(model, blockSize, p, full)
    }

    const onExhausted = (e: unknown, asked: number, matchedNode: TreeNode) => {
      if (!(e instanceof BlockPoolExhausted)) throw e
      const err = e
      exhausted = true
      expect(err._tag).toBe("BlockPoolExhausted")
      expect(err.asked).toBe(asked)
      expect(err.capacity).toBe(numBlocks)
      expect(err.free).toBe(tree.pool.free)
      expect(err.free).toBeLessThan(err.asked)
      // Eviction ran dry: the only unlocked leaf left is the node the operation was matching into.
      for (const n of tree.nodes()) {
        ensure(n.lockRef > 0 || n.children.size > 0 || n === matchedNode, () => `node ${n.id} left evictable`)
      }
    }

    switch (o.kind) {
      case "insert": {
        const base = history[o.base % Math.max(1, history.length)] ?? []
        const full = [...base.slice(0, o.cut % (base.length + 1)), ...o.extra.map((t) => t % vocab)]
        const matched = tree.match(full)
        const { asked } = expectedAsk(tree, matched, full, undefined)
        // Live sequences are never evicted, so their common prefix with `full` must be reused (up to a private node).
        let shared = 0
        for (const [live, t] of model.live) {
          const reach = privateStarts(tree, live)[0]?.start ?? t.length
          let k = 0
          while (k < reach && k < full.length && t[k] === full[k]) k++
          shared = Math.max(shared, k)
        }
        try {
          const p = tree.insert(full)
          expect(p.newStart).toBe(matched.length)
          expect(p.newStart).toBeGreaterThanOrEqual(shared)
          expect(allocated()).toBe(asked)
          model.live.set(p.seq, full)
          history.push(full)
          checkPlacement(p, full, 0)
        } catch (e) {
          onExhausted(e, asked, matched.node)
        }
        break
      }
      case "fork": {
        const seq = pickLive(o.pick)
        if (seq === undefined) break
        const child = tree.fork(seq)
        expect(tree.pool.free).toBe(freeBefore)
        model.live.set(child, [...model.live.get(seq)!])
        break
      }
      case "append": {
        const seq = pickLive(o.pick)
        if (seq === undefined) break
        const before = model.live.get(seq)!
        const full = [...before, ...o.tokens.map((t) => t % vocab)]
        const matched = matchAfter(tree, seq, full.slice(before.length))
        const { asked, freed, takenOver } = expectedAsk(tree, matched, full, tree.sequence(seq).end)
        try {
          const p = tree.append(seq, full.slice(before.length))
          expect(p.seq).toBe(seq)
          expect(p.newStart).toBe(matched.length)
          if (takenOver !== undefined) expect(p.copies).toEqual([])
          expect(allocated()).toBe(asked - freed)
          model.live.set(seq, full)
          history.push(full)
          checkPlacement(p, full, before.length, takenOver)
        } catch (e) {
          onExhausted(e, asked, matched.node)
        }
        break
      }
      case "pending": {
        const seq = pickLive(o.pick)
        if (seq === undefined) break
        const before = model.live.get(seq)!
        const full = [...before, o.token % vocab]
        const end = tree.sequence(seq).end
        // One token: the end node grows in place when only this sequence holds it, else a new child starts.
        const grows = end !== tree.root && end.children.size === 0 && end.lockRef === 1
        const asked = grows && before.length % blockSize !== 0 ? 0 : 1
        let p: Placement
        try {
          p = tree.appendPending(seq)
        } catch (e) {
          onExhausted(e, asked, end)
          break
        }
        expect(allocated()).toBe(asked)
        expect(p.newStart).toBe(before.length)
        checkPlacement(p, full, before.length)
        // Until it is named, the token is the sequence's own: nothing matches it, and the sequence cannot grow or fork.
        expect(tree.lengthOf(seq)).toBe(full.length)
        const m = tree.match(full)
        expect(m.node !== tree.sequence(seq).end || m.length <= before.length).toBe(true)
        expect(() => tree.append(seq, [0])).toThrow(RangeError)
        expect(() => tree.fork(seq)).toThrow(RangeError)
        if (o.sibling >= 0) {
          const longer = [...full, ...Array<number>(o.sibling).fill(0)]
          try {
            const q = tree.insert(longer)
            model.live.set(q.seq, longer)
            checkPlacement(q, longer, 0)
          } catch (e) {
            if (!(e instanceof BlockPoolExhausted)) throw e
            exhausted = true
          }
        }
        if (o.resolve) {
          // Named, it may move onto a sibling holding the same token: its own node then leaves.
          dropped = tree.sequence(seq).end
          tree.resolvePending(seq, full.at(-1)!)
          if (tree.sequence(seq).end.key < 0) keptPrivate = true
          if (tree.sequence(seq).end !== dropped) moved = true
          expect(() => tree.resolvePending(seq, 0)).toThrow(RangeError)
          model.live.set(seq, full)
          history.push(full)
        } else {
          // The node holding only the pending token leaves with it, lock and all.
          dropped = tree.sequence(seq).end
          tree.release(seq)
          model.live.delete(seq)
        }
        break
      }
      case "release": {
        const seq = pickLive(o.pick)
        if (seq === undefined) break
        tree.release(seq)
        model.live.delete(seq)
        expect(tree.isLive(seq)).toBe(false)
        break
      }
      case "lock": {
        const seq = pickLive(o.pick)
        if (seq === undefined || model.live.get(seq)!.length === 0) break
        const node = tree.sequence(seq).end
        tree.lock(node)
        model.pins.push({ node, tokens: [...model.live.get(seq)!] })
        break
      }
      case "unlock": {
        if (model.pins.length === 0) break
        const [pin] = model.pins.splice(o.pick % model.pins.length, 1)
        tree.unlock(pin!.node)
        break
      }
      case "evict": {
        const freed = tree.evict(o.blocks)
        expect(tree.pool.free - freeBefore).toBe(freed)
        if (freed < o.blocks) {
          for (const n of tree.nodes()) ensure(n.lockRef > 0 || n.children.size > 0, () => `node ${n.id} left evictable`)
        }
        break
      }
    }

    if (nodesBefore.some((n) => n.evicted)) evicted = true
    // Eviction never touches a locked node.
    for (const n of lockedBefore) ensure(!n.evicted || n === dropped, () => `locked node ${n.id} was evicted`)
    checkTree(tree, model)
    const order = [...model.live.keys()]
    const plan = planLevels(tree, order)
    checkPlan(plan, blockSize, planExpectations(tree, order))
    const refreshed = planner.refreshed
    expect(planner.plan(tree, order)).toEqual(plan)
    const lengths = order.map((seq) => tree.lengthOf(seq))
    if (planner.refreshed > refreshed && lengths.some((l, i) => l !== lengthsBefore[i])) refreshedGrown++
    lengthsBefore = lengths
    const reversed = order.slice().reverse()
    checkPlan(planLevels(tree, reversed), blockSize, planExpectations(tree, reversed))
  }
  return { exhausted, evicted, keptPrivate, moved, refreshedGrown }
}

describe("PrefixTree under random operations", () => {
  it("keeps tokens, ref counts, blocks, KV contents and plans consistent", () => {
    let exhausted = 0
    let evicted = 0
    let keptPrivate = 0
    let moved = 0
    let refreshedGrown = 0
    fc.assert(
      fc.property(scenario, (s) => {
        const r = run(s)
        refreshedGrown += r.refreshedGrown
        if (r.exhausted) exhausted++
        if (r.evicted) evicted++
        if (r.keptPrivate) keptPrivate++
        if (r.moved) moved++
      }),
      { numRuns: 400 }
    )
    // The checks are only as good as the states visited: small pools must exhaust and evict often.
    expect(exhausted).toBeGreaterThan(40)
    expect(evicted).toBeGreaterThan(40)
    // and pending tokens must meet siblings that took their key first: shared, and kept apart
    expect(moved).toBeGreaterThan(20)
    expect(keptPrivate).toBeGreaterThan(20)
    // and the planner must have refreshed plans whose sequences grew, not only rebuilt them
    expect(refreshedGrown).toBeGreaterThan(100)
  })

  it("keeps them consistent with roomy pools and long shared prefixes", () => {
    fc.assert(
      fc.property(
        scenario.map((s) => ({ ...s, numBlocks: s.numBlocks + 40, vocab: Math.min(s.vocab, 2) })),
        (s) => void run(s)
      ),
      { numRuns: 200 }
    )
  })
})
