/**
 * Independent checks of the tree and the plan against a plain model: the
 * tokens of each live sequence, explicit locks, and a simulated GPU memory
 * holding, per (block, slot), the prefix whose KV was written there.
 */
import { expect } from "vitest"
import type { LevelPlan } from "../src/LevelPlan.ts"
import type { Placement, PrefixTree, SeqId, TreeNode } from "../src/PrefixTree.ts"

export interface Model {
  /** live sequence → its tokens */
  readonly live: Map<SeqId, number[]>
  /** explicit locks: the node and the tokens from the root to its end */
  readonly pins: Array<{ node: TreeNode; tokens: number[] }>
  /** simulated KV memory: block·blockSize + slot → the prefix (joined tokens) whose last token's KV is there */
  readonly memory: Map<number, string>
}

/** a cheap assertion for inner loops, where expect() would dominate the run time */
export function ensure(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(message())
}

export const emptyModel = (): Model => ({ live: new Map(), pins: [], memory: new Map() })

export const kvOf = (tokens: ReadonlyArray<number>, position: number): string => tokens.slice(0, position + 1).join(",")

/** What the GPU would do with a placement: the copies, then the new tokens' KV. */
export function applyPlacement(model: Model, blockSize: number, p: Placement, tokens: ReadonlyArray<number>): void {
  for (const c of p.copies) {
    for (let s = c.fromSlot; s < c.toSlot; s++) {
      const v = model.memory.get(c.src * blockSize + s)
      if (v === undefined) model.memory.delete(c.dst * blockSize + s)
      else model.memory.set(c.dst * blockSize + s, v)
    }
  }
  for (let i = 0; i < p.newBlocks.length; i++) {
    model.memory.set(p.newBlocks[i]! * blockSize + p.newSlots[i]!, kvOf(tokens, p.newStart + i))
  }
}

/** tokens from the root to the end of `node` */
export function tokensTo(tree: PrefixTree, node: TreeNode): number[] {
  const chain: TreeNode[] = []
  for (let n: TreeNode = node; n !== tree.root; n = n.parent!) chain.push(n)
  return chain.reverse().flatMap((n) => n.tokens)
}

/** every occupied (block, slot) of the tree, as block·blockSize + slot, with the node holding it */
export function occupiedSlots(tree: PrefixTree): Map<number, TreeNode> {
  const out = new Map<number, TreeNode>()
  for (const n of tree.nodes()) {
    for (let t = 0; t < n.length; t++) {
      const i = n.startSlot + t
      out.set(n.blocks[Math.floor(i / tree.blockSize)]! * tree.blockSize + (i % tree.blockSize), n)
    }
  }
  return out
}

/** Where on a live sequence's path private nodes (negative keys) start, with their ids. */
export function privateStarts(tree: PrefixTree, seq: SeqId): Array<{ start: number; id: number }> {
  const out: Array<{ start: number; id: number }> = []
  let start = 0
  for (const n of tree.path(seq)) {
    if (n.key < 0) out.push({ start, id: n.id })
    start += n.length
  }
  return out
}

export function checkTree(tree: PrefixTree, model: Model): void {
  const bs = tree.blockSize
  const pool = tree.pool

  // Every live sequence spells its tokens, and its KV holds exactly its prefixes.
  expect(new Set(tree.sequences())).toEqual(new Set(model.live.keys()))
  for (const [seq, tokens] of model.live) {
    expect(tree.tokensOf(seq)).toEqual(tokens)
    expect(tree.lengthOf(seq)).toBe(tokens.length)
    const path = tree.path(seq)
    expect(path.at(-1) ?? tree.root).toBe(tree.sequence(seq).end)
    const { blocks, slots } = tree.slotsOf(seq)
    for (let p = 0; p < tokens.length; p++) {
      ensure(slots[p] === p % bs, () => `seq ${seq} position ${p} at slot ${slots[p]}`)
      const one = tree.slotOf(seq, p)
      ensure(one.block === blocks[p] && one.slot === slots[p], () => `slotOf(${seq}, ${p}) disagrees with slotsOf`)
      const kv = model.memory.get(blocks[p]! * bs + slots[p]!)
      ensure(kv === kvOf(tokens, p), () => `seq ${seq} position ${p} reads KV of [${kv}], wants [${kvOf(tokens, p)}]`)
    }
  }
  for (const pin of model.pins) {
    expect(pin.node.evicted).toBe(false)
    expect(tokensTo(tree, pin.node)).toEqual(pin.tokens)
  }

  // Ref counts: live sequences and explicit locks through each node.
  const expectedRefs = new Map<TreeNode, number>()
  const count = (end: TreeNode) => {
    for (let n = end; n !== tree.root; n = n.parent!) expectedRefs.set(n, (expectedRefs.get(n) ?? 0) + 1)
  }
  for (const seq of model.live.keys()) count(tree.sequence(seq).end)
  for (const pin of model.pins) count(pin.node)

  // Structure, slot layout and block ownership.
  const owners = new Map<number, number>()
  let cachedTokens = 0
  let evictableBlocks = 0
  let nodes = 0
  for (const n of tree.nodes()) {
    nodes++
    expect(n.evicted).toBe(false)
    expect(n.length).toBeGreaterThan(0)
    expect(n.lockRef).toBe(expectedRefs.get(n) ?? 0)
    const parent = n.parent!
    // Keyed by its first token (with its namespace below the root), or private under a placeholder's negative key.
    expect(parent.children.get(n.key)).toBe(n)
    if (n.key >= 0) expect(n.key).toBe(parent === tree.root ? n.namespace * 2 ** 32 + n.tokens[0]! : n.tokens[0])
    ensure(n.tokens.every((t) => t >= 0), () => `node ${n.id} holds a placeholder: [${n.tokens}]`)
    for (const child of n.children.values()) expect(child.parent).toBe(n)
    const absStart = tokensTo(tree, parent).length
    expect(n.startSlot).toBe(absStart % bs)
    expect(n.blocks.length).toBe(Math.ceil((n.startSlot + n.length) / bs))
    for (const b of n.blocks) {
      ensure(!owners.has(b), () => `block ${b} owned by nodes ${owners.get(b)} and ${n.id}`)
      owners.set(b, n.id)
      ensure(pool.refCount(b) === 1, () => `block ${b} has ${pool.refCount(b)} references`)
    }
    cachedTokens += n.length
    if (n.lockRef === 0) evictableBlocks += n.blocks.length
  }
  expect(owners.size).toBe(pool.used)
  expect(pool.used + pool.free).toBe(pool.capacity)

  // Shared tokens, from the model: distinct prefixes that two or more live sequences extend. A node kept
  // private under a placeholder key (its first token was named after a sibling took that key) shares with no one.
  const prefixUsers = new Map<string, number>()
  for (const [seq, tokens] of model.live) {
    const privateFrom = privateStarts(tree, seq)
    for (let p = 0; p < tokens.length; p++) {
      const k = kvOf(tokens, p) + privateFrom.filter((x) => x.start <= p).map((x) => `|${x.id}`).join("")
      prefixUsers.set(k, (prefixUsers.get(k) ?? 0) + 1)
    }
  }
  const sharedTokens = [...prefixUsers.values()].filter((c) => c > 1).length
  expect(tree.stats()).toEqual({
    nodes,
    blockSize: bs,
    blocksUsed: pool.used,
    blocksFree: pool.free,
    capacity: pool.capacity,
    evictableBlocks,
    cachedTokens,
    sharedTokens,
    liveSequences: model.live.size
  })
}

function checkCsr(indptr: Uint32Array, entries: number, length: number): void {
  expect(indptr.length).toBe(entries + 1)
  expect(indptr[0]).toBe(0)
  for (let i = 0; i < entries; i++) ensure(indptr[i + 1]! >= indptr[i]!, () => `indptr decreases at ${i}`)
  expect(indptr[entries]).toBe(length)
}

/**
 * The plan is well formed and, for each planned sequence, its KV runs along
 * its partial slots (root → leaf) list exactly the sequence's own slots.
 * `slotsOf(s)` gives sequence s's (block, slot) list in position order.
 */
export function checkPlan(
  plan: LevelPlan,
  blockSize: number,
  seqs: ReadonlyArray<{ path: ReadonlyArray<TreeNode>; blocks: Uint32Array; slots: Uint32Array }>
): void {
  expect(plan.blockSize).toBe(blockSize)
  expect(plan.numSequences).toBe(seqs.length)
  checkCsr(plan.seqPartialIndptr, seqs.length, plan.seqPartials.length)
  checkCsr(plan.pathIndptr, seqs.length, plan.pathNodes.length)
  expect(plan.seqLength.length).toBe(seqs.length)

  // owner[partial slot] = (level, node index, sequence)
  const owner: Array<{ level: number; node: number; seq: number }> = []
  let offset = 0
  plan.levels.forEach((level, l) => {
    expect(level.depth).toBe(l)
    expect(level.queryOffset).toBe(offset)
    const count = level.nodeIds.length
    expect(level.length.length).toBe(count)
    expect(level.startSlot.length).toBe(count)
    expect(new Set(level.nodeIds).size).toBe(count)
    checkCsr(level.blockIndptr, count, level.blockIndices.length)
    checkCsr(level.queryIndptr, count, level.queryIndices.length)
    expect(level.queryKvLimit).toBeUndefined()
    for (let n = 0; n < count; n++) {
      const lo = level.queryIndptr[n]!
      const hi = level.queryIndptr[n + 1]!
      ensure(hi > lo, () => `level ${l} node ${n} has no query`)
      const blocks = level.blockIndptr[n + 1]! - level.blockIndptr[n]!
      const want = level.length[n] === 0 ? 0 : Math.ceil((level.startSlot[n]! + level.length[n]!) / blockSize)
      ensure(blocks === want, () => `level ${l} node ${n}: ${blocks} blocks, wants ${want}`)
      for (let k = lo; k < hi; k++) {
        const s = level.queryIndices[k]!
        ensure(s < seqs.length, () => `query index ${s} out of range`)
        ensure(k === lo || s > level.queryIndices[k - 1]!, () => `level ${l} node ${n}: query indices not increasing`)
        owner[offset + k] = { level: l, node: n, seq: s }
      }
    }
    offset += level.queryIndices.length
  })
  expect(plan.numPartials).toBe(offset)
  expect(plan.seqPartials.length).toBe(offset)

  const seen = new Set<number>()
  seqs.forEach((want, s) => {
    expect(plan.seqLength[s]).toBe(want.slots.length)
    const ids = Array.from(plan.pathNodes.subarray(plan.pathIndptr[s], plan.pathIndptr[s + 1]))
    expect(ids).toEqual(want.path.map((n) => n.id))
    const blocks: number[] = []
    const slots: number[] = []
    const partials = plan.seqPartials.subarray(plan.seqPartialIndptr[s], plan.seqPartialIndptr[s + 1])
    expect(partials.length).toBe(want.path.length)
    partials.forEach((p, j) => {
      ensure(!seen.has(p), () => `partial ${p} used twice`)
      seen.add(p)
      const o = owner[p]
      ensure(o !== undefined && o.seq === s && o.level === j, () => `seq ${s}'s partial ${j} is ${JSON.stringify(o)}`)
      const level = plan.levels[o!.level]!
      ensure(level.nodeIds[o!.node] === want.path[j]!.id, () => `seq ${s}'s partial ${j} is not on its path`)
      const node = o!.node
      const table = level.blockIndices.subarray(level.blockIndptr[node], level.blockIndptr[node + 1])
      for (let t = 0; t < level.length[node]!; t++) {
        const i = level.startSlot[node]! + t
        blocks.push(table[Math.floor(i / blockSize)]!)
        slots.push(i % blockSize)
      }
    })
    expect(blocks).toEqual(Array.from(want.blocks))
    expect(slots).toEqual(Array.from(want.slots))
  })
  expect(seen.size).toBe(offset)
}

/** checkPlan's expectations for live sequences of a tree */
export const planExpectations = (tree: PrefixTree, seqs: ReadonlyArray<SeqId>) =>
  seqs.map((seq) => ({ path: tree.path(seq), ...tree.slotsOf(seq) }))
