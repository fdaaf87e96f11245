import { describe, expect, it } from "vitest"
import { BlockPool, BlockPoolExhausted } from "../src/BlockPool.ts"
import { PrefixTree, UnknownSequence } from "../src/PrefixTree.ts"

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const treeOf = (numBlocks: number, blockSize: number) => new PrefixTree(new BlockPool({ numBlocks, blockSize }))
const shape = (tree: PrefixTree, seq: number) =>
  tree.path(seq).map((n) => ({ tokens: [...n.tokens], blocks: [...n.blocks], startSlot: n.startSlot, lockRef: n.lockRef }))
const caught = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  throw new Error("expected a throw")
}

describe("insert", () => {
  it("places a new sequence's tokens at the slots of their positions", () => {
    const tree = treeOf(8, 4)
    const p = tree.insert(range(1, 10))
    expect(p.newStart).toBe(0)
    expect(p.length).toBe(10)
    expect(Array.from(p.newBlocks)).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    expect(Array.from(p.newSlots)).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    expect(p.copies).toEqual([])
    expect(shape(tree, p.seq)).toEqual([{ tokens: range(1, 10), blocks: [0, 1, 2], startSlot: 0, lockRef: 1 }])
  })

  it("handles the empty sequence", () => {
    const tree = treeOf(4, 4)
    const p = tree.insert([])
    expect([p.newStart, p.length, p.newBlocks.length, p.copies.length]).toEqual([0, 0, 0, 0])
    expect(tree.path(p.seq)).toEqual([])
    expect(tree.tokensOf(p.seq)).toEqual([])
    expect(tree.sequence(p.seq).end).toBe(tree.root)
    const f = tree.fork(p.seq)
    const a = tree.append(f, [4, 5])
    expect([a.newStart, a.length]).toEqual([0, 2])
    expect(shape(tree, f)).toEqual([{ tokens: [4, 5], blocks: [0], startSlot: 0, lockRef: 1 }])
    expect(tree.lengthOf(p.seq)).toBe(0)
    expect(tree.stats().liveSequences).toBe(2)
  })

  it("shares identical sequences completely", () => {
    const tree = treeOf(4, 4)
    const a = tree.insert([5, 6, 7])
    const b = tree.insert([5, 6, 7])
    expect([b.newStart, b.newBlocks.length, b.copies.length]).toEqual([3, 0, 0])
    expect(tree.sequence(b.seq).end).toBe(tree.sequence(a.seq).end)
    expect(tree.sequence(a.seq).end.lockRef).toBe(2)
    expect(tree.stats()).toMatchObject({ nodes: 1, blocksUsed: 1, sharedTokens: 3, cachedTokens: 3, liveSequences: 2 })
  })

  it("splits inside a block when a sequence is a prefix of another: the upper part gets a copy", () => {
    const tree = treeOf(8, 4)
    const a = tree.insert(range(1, 10))
    const b = tree.insert(range(1, 6))
    // Split at 6: slot 2 of block 1. The upper part takes block 0 and a copy of block 1's slots [0, 2).
    expect(b.copies).toEqual([{ src: 1, dst: 3, fromSlot: 0, toSlot: 2 }])
    expect([b.newStart, b.newBlocks.length]).toEqual([6, 0])
    expect(shape(tree, a.seq)).toEqual([
      { tokens: range(1, 6), blocks: [0, 3], startSlot: 0, lockRef: 2 },
      { tokens: range(7, 10), blocks: [1, 2], startSlot: 2, lockRef: 1 }
    ])
    expect(tree.path(b.seq)).toEqual(tree.path(a.seq).slice(0, 1))
    expect(tree.slotOf(b.seq, 5)).toEqual({ block: 3, slot: 1 })
    expect(tree.slotOf(a.seq, 5)).toEqual({ block: 3, slot: 1 })
    expect(tree.slotOf(a.seq, 6)).toEqual({ block: 1, slot: 2 })
    expect(tree.stats()).toMatchObject({ nodes: 2, blocksUsed: 4, sharedTokens: 6, cachedTokens: 10 })
  })

  it("keeps the lower node's identity across a split", () => {
    const tree = treeOf(8, 4)
    const a = tree.insert(range(1, 10))
    const end = tree.sequence(a.seq).end
    const id = end.id
    tree.insert(range(1, 3))
    expect(tree.sequence(a.seq).end).toBe(end)
    expect(end.id).toBe(id)
    expect(tree.depth(end)).toBe(1)
    expect(tree.depth(end.parent!)).toBe(0)
    expect(tree.depth(tree.root)).toBe(-1)
  })

  it("splits at a block boundary without copying", () => {
    const tree = treeOf(8, 4)
    const a = tree.insert(range(1, 10))
    const b = tree.insert(range(1, 8))
    expect(b.copies).toEqual([])
    expect(tree.pool.used).toBe(3)
    expect(shape(tree, a.seq)).toEqual([
      { tokens: range(1, 8), blocks: [0, 1], startSlot: 0, lockRef: 2 },
      { tokens: [9, 10], blocks: [2], startSlot: 0, lockRef: 1 }
    ])
  })

  it("diverges inside a block: copy for the upper part, the new branch in a fresh block at the same slot", () => {
    const tree = treeOf(8, 4)
    const a = tree.insert(range(1, 10))
    const b = tree.insert([...range(1, 6), 99])
    expect(b.copies).toEqual([{ src: 1, dst: 3, fromSlot: 0, toSlot: 2 }])
    expect([b.newStart, Array.from(b.newBlocks), Array.from(b.newSlots)]).toEqual([6, [4], [2]])
    expect(shape(tree, b.seq)).toEqual([
      { tokens: range(1, 6), blocks: [0, 3], startSlot: 0, lockRef: 2 },
      { tokens: [99], blocks: [4], startSlot: 2, lockRef: 1 }
    ])
    expect(tree.path(a.seq)[1]!.blocks).toEqual([1, 2])
  })

  it("diverges at a block boundary without copying", () => {
    const tree = treeOf(8, 4)
    tree.insert(range(1, 10))
    const b = tree.insert([...range(1, 8), 99])
    expect(b.copies).toEqual([])
    expect([b.newStart, Array.from(b.newBlocks), Array.from(b.newSlots)]).toEqual([8, [3], [0]])
  })

  it("copies only the slots the upper part holds when the split is in a node's first, shared-start block", () => {
    const tree = treeOf(8, 4)
    tree.insert(range(1, 5)) // blocks 0, 1
    const c = tree.insert(range(1, 7)) // child [6, 7] from slot 1 of block 2
    expect([Array.from(c.newBlocks), Array.from(c.newSlots)]).toEqual([[2, 2], [1, 2]])
    const d = tree.insert(range(1, 6)) // split [6, 7] after 6: slot 2 of block 2
    expect(d.copies).toEqual([{ src: 2, dst: 3, fromSlot: 1, toSlot: 2 }])
    expect(shape(tree, c.seq).slice(1)).toEqual([
      { tokens: [6], blocks: [3], startSlot: 1, lockRef: 2 },
      { tokens: [7], blocks: [2], startSlot: 2, lockRef: 1 }
    ])
  })

  it("works with one-token blocks: splits never copy", () => {
    const tree = treeOf(8, 1)
    const a = tree.insert([1, 2, 3])
    const b = tree.insert([1, 2, 9])
    const c = tree.insert([1])
    expect([b.copies, c.copies]).toEqual([[], []])
    expect(shape(tree, a.seq)).toEqual([
      { tokens: [1], blocks: [0], startSlot: 0, lockRef: 3 },
      { tokens: [2], blocks: [1], startSlot: 0, lockRef: 2 },
      { tokens: [3], blocks: [2], startSlot: 0, lockRef: 1 }
    ])
    expect(shape(tree, b.seq)[2]).toEqual({ tokens: [9], blocks: [3], startSlot: 0, lockRef: 1 })
  })

  it("grows a cached, unused leaf in place", () => {
    const tree = treeOf(4, 4)
    const a = tree.insert([1, 2, 3])
    const node = tree.sequence(a.seq).end
    tree.release(a.seq)
    const b = tree.insert([1, 2, 3, 4, 5])
    expect(tree.sequence(b.seq).end).toBe(node)
    expect([b.newStart, Array.from(b.newBlocks), Array.from(b.newSlots)]).toEqual([3, [0, 1], [3, 0]])
    expect(tree.stats()).toMatchObject({ nodes: 1, blocksUsed: 2 })
  })

  it("reports a match that ends inside a node", () => {
    const tree = treeOf(8, 4)
    tree.insert(range(1, 10))
    const m = tree.match([1, 2, 3, 7])
    expect([m.length, m.inNode, [...m.node.tokens]]).toEqual([3, 3, range(1, 10)])
    expect(tree.match([42])).toEqual({ node: tree.root, inNode: 0, length: 0 })
  })
})

describe("fork and append", () => {
  it("grows an exclusive leaf in place and branches a shared one", () => {
    const tree = treeOf(8, 4)
    const s = tree.insert([1, 2, 3]).seq
    const grown = tree.append(s, [4, 5])
    expect([grown.newStart, grown.length, Array.from(grown.newBlocks), Array.from(grown.newSlots)]).toEqual([3, 5, [0, 1], [3, 0]])
    expect(shape(tree, s)).toEqual([{ tokens: range(1, 5), blocks: [0, 1], startSlot: 0, lockRef: 1 }])

    const f = tree.fork(s)
    expect(tree.tokensOf(f)).toEqual(range(1, 5))
    expect(tree.pool.used).toBe(2)
    const s6 = tree.append(s, [6])
    expect([Array.from(s6.newBlocks), Array.from(s6.newSlots)]).toEqual([[2], [1]])
    // The fork samples the same token: it reuses the cached KV, nothing new to compute.
    const f6 = tree.append(f, [6])
    expect([f6.newStart, f6.newBlocks.length]).toEqual([6, 0])
    expect(tree.sequence(f).end).toBe(tree.sequence(s).end)
    const f7 = tree.append(f, [7])
    const s8 = tree.append(s, [8])
    expect([Array.from(f7.newBlocks), Array.from(f7.newSlots)]).toEqual([[3], [2]])
    expect([Array.from(s8.newBlocks), Array.from(s8.newSlots)]).toEqual([[4], [2]])
    expect(tree.tokensOf(s)).toEqual([1, 2, 3, 4, 5, 6, 8])
    expect(tree.tokensOf(f)).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(tree.stats()).toMatchObject({ nodes: 4, sharedTokens: 6, liveSequences: 2 })
  })

  it("does not grow a leaf that is locked by someone else", () => {
    const tree = treeOf(8, 4)
    const s = tree.insert([1, 2]).seq
    tree.lock(tree.sequence(s).end)
    tree.append(s, [3])
    expect(tree.path(s).map((n) => [...n.tokens])).toEqual([[1, 2], [3]])
  })

  it("splits a held child that the appended tokens leave midway, with its copy", () => {
    const tree = treeOf(8, 4)
    tree.insert(range(1, 7)) // stays live: [3..7] is held
    const s = tree.insert([1, 2]).seq // splits [1..7] at 2: slot 2 of block 0 → copy into block 2
    const p = tree.append(s, [3, 4, 5, 99])
    // [3..7] starts at slot 2 of block 0; leaving it after 5 (slot 1 of block 1) copies block 1's slot 0.
    expect(p.copies).toEqual([{ src: 1, dst: 3, fromSlot: 0, toSlot: 1 }])
    expect([p.newStart, Array.from(p.newBlocks), Array.from(p.newSlots)]).toEqual([5, [4], [1]])
    expect(tree.tokensOf(s)).toEqual([1, 2, 3, 4, 5, 99])
  })
  it("takes over a cached leaf no one holds when the appended tokens leave it midway: no copy, no new block", () => {
    const tree = treeOf(8, 4)
    const long = tree.insert(range(1, 7)).seq
    tree.release(long)
    const s = tree.insert([1, 2]).seq // splits [1..7] at 2: [3..7] is a leaf no one holds
    const p = tree.append(s, [3, 4, 5, 99])
    expect(p.copies).toEqual([])
    // [3..7] is cut after 5 (position 4, slot 0 of block 1) and grows 99 into slot 1 of that block.
    expect([p.newStart, Array.from(p.newBlocks), Array.from(p.newSlots)]).toEqual([5, [1], [1]])
    expect(tree.path(s).map((n) => [...n.tokens])).toEqual([[1, 2], [3, 4, 5, 99]])
    expect(tree.stats().blocksUsed).toBe(3)
  })

  it("retraces a released sample token by token with no copy and no block beyond its prompt's split", () => {
    const tree = treeOf(64, 4)
    const prompt = range(1, 6)
    const sample = range(100, 140)
    const first = tree.insert(prompt).seq
    for (const t of sample) tree.append(first, [t])
    tree.release(first)
    const fresh = tree.stats().blocksUsed
    const again = tree.insert(prompt).seq
    for (const t of sample) expect(tree.append(again, [t]).copies).toEqual([])
    expect(tree.tokensOf(again)).toEqual([...prompt, ...sample])
    // The first run grew one node; inserting the prompt again splits it there, which copies one block.
    expect(tree.stats().blocksUsed).toBe(fresh + 1)
    expect(tree.path(again).map((n) => n.length)).toEqual([prompt.length, sample.length])
  })
})

describe("release, lock and eviction", () => {
  it("evicts least recently used leaves first, a sequence's release counting as its last use", () => {
    const tree = treeOf(6, 1)
    const a = tree.insert([1, 2]).seq
    const b = tree.insert([3, 4]).seq
    const c = tree.insert([5, 6]).seq
    tree.release(c)
    tree.release(a)
    tree.release(b)
    const lengths = () => [[1, 2], [3, 4], [5, 6]].map((t) => tree.match(t).length)
    tree.insert([7, 8])
    expect(lengths()).toEqual([2, 2, 0])
    // Using [1, 2] again makes [3, 4] the oldest.
    tree.release(tree.insert([1, 2]).seq)
    tree.insert([9, 9])
    expect(lengths()).toEqual([2, 0, 0])
  })

  it("evicts a parent once its last child is gone", () => {
    const tree = treeOf(4, 1)
    tree.release(tree.insert([1, 2]).seq)
    tree.release(tree.insert([1, 3]).seq)
    expect(tree.stats().nodes).toBe(3)
    expect(tree.evict(3)).toBe(3)
    expect(tree.stats()).toMatchObject({ nodes: 0, blocksUsed: 0, blocksFree: 4 })
  })

  it("never evicts a locked node", () => {
    const tree = treeOf(2, 2)
    const s = tree.insert([1, 2, 3]).seq
    const node = tree.sequence(s).end
    tree.lock(node)
    tree.release(s)
    expect(tree.evict(10)).toBe(0)
    expect(tree.match([1, 2, 3]).length).toBe(3)
    const err = caught(() => tree.insert([7]))
    expect(err).toBeInstanceOf(BlockPoolExhausted)
    expect(err).toMatchObject({ asked: 1, free: 0, capacity: 2 })
    tree.unlock(node)
    tree.insert([7])
    expect(node.evicted).toBe(true)
    expect(tree.match([1, 2, 3]).length).toBe(0)
  })

  it("throws BlockPoolExhausted with the numbers after evicting what it could", () => {
    const tree = treeOf(4, 2)
    const a = tree.insert([1, 2, 3, 4]).seq
    tree.release(tree.insert([5, 6]).seq)
    const err = caught(() => tree.insert([7, 8, 9, 10, 11]))
    expect(err).toBeInstanceOf(BlockPoolExhausted)
    expect(err).toMatchObject({ _tag: "BlockPoolExhausted", asked: 3, free: 2, capacity: 4 })
    expect(tree.match([5, 6]).length).toBe(0)
    expect(tree.tokensOf(a)).toEqual([1, 2, 3, 4])
    expect(tree.stats()).toMatchObject({ nodes: 1, liveSequences: 1, blocksFree: 2 })
  })

  it("leaves the tree unsplit when an insert fails", () => {
    const tree = treeOf(3, 2)
    const a = tree.insert([1, 2, 3]).seq
    const err = caught(() => tree.insert([1, 2, 9, 9, 9, 9]))
    expect(err).toMatchObject({ asked: 2, free: 1, capacity: 3 })
    expect(shape(tree, a)).toEqual([{ tokens: [1, 2, 3], blocks: [0, 1], startSlot: 0, lockRef: 1 }])
    expect(tree.stats().nodes).toBe(1)
  })

  it("rejects released sequences and foreign nodes", () => {
    const tree = treeOf(4, 2)
    const s = tree.insert([1, 2]).seq
    tree.release(s)
    expect(tree.isLive(s)).toBe(false)
    const err = caught(() => tree.release(s))
    expect(err).toBeInstanceOf(UnknownSequence)
    expect(err).toMatchObject({ _tag: "UnknownSequence", seq: s })
    expect(() => tree.append(s, [3])).toThrow(UnknownSequence)
    const other = treeOf(4, 2)
    const t = other.insert([1]).seq
    expect(() => tree.lock(other.sequence(t).end)).toThrow(RangeError)
    expect(() => other.slotOf(t, 1)).toThrow(RangeError)
  })
})

describe("namespaces", () => {
  it("never share KV across namespaces, and share within one", () => {
    const tree = new PrefixTree(new BlockPool({ numBlocks: 16, blockSize: 2 }))
    const a = tree.insert([1, 2, 3], 0)
    const b = tree.insert([1, 2, 3], 1)
    const c = tree.insert([1, 2, 4], 1)
    expect(b.newStart).toBe(0) // nothing of namespace 0 is reused
    expect(c.newStart).toBe(2) // [1, 2] is shared with b inside namespace 1
    const blocksOf = (seq: number) => new Set(tree.path(seq).flatMap((n) => n.blocks))
    const shared = [...blocksOf(a.seq)].filter((x) => blocksOf(b.seq).has(x))
    expect(shared).toEqual([])
    expect(tree.tokensOf(b.seq)).toEqual([1, 2, 3])
    expect(tree.tokensOf(c.seq)).toEqual([1, 2, 4])
    expect(tree.match([1, 2, 4], 0).length).toBe(2)
    expect(tree.match([1, 2, 4], 1).length).toBe(3)
    // appends stay in the sequence's namespace
    tree.append(b.seq, [9])
    expect(tree.path(b.seq).every((n) => n.namespace === 1)).toBe(true)
    // eviction of a namespaced leaf unlinks it from the root
    tree.release(a.seq)
    expect(tree.evict(16)).toBeGreaterThan(0)
    expect(tree.match([1, 2, 3], 0).length).toBe(0)
    expect(tree.match([1, 2, 3], 1).length).toBe(3)
  })
})

describe("pending tokens", () => {
  const tree = () => new PrefixTree(new BlockPool({ numBlocks: 16, blockSize: 4 }))

  it("get a slot before they are known, and are matched once named", () => {
    const t = tree()
    const a = t.insert([1, 2, 3]).seq
    const p = t.appendPending(a)
    expect([p.newStart, p.length]).toEqual([3, 4])
    expect(t.match([1, 2, 3, 7]).length).toBe(3)
    t.resolvePending(a, 7)
    expect(t.tokensOf(a)).toEqual([1, 2, 3, 7])
    expect(t.match([1, 2, 3, 7]).length).toBe(4)
  })

  it("share a sibling that holds the same token, stay private beside a longer held one, and leave the tree when never named", () => {
    const t = tree()
    const a = t.insert([1, 2]).seq
    const b = t.fork(a)
    const c = t.fork(a)
    t.appendPending(a)
    t.appendPending(b)
    t.resolvePending(a, 5)
    t.resolvePending(b, 5)
    // b moved onto a's one-token node: one slot for [1, 2, 5]
    expect(t.tokensOf(b)).toEqual([1, 2, 5])
    expect(t.slotOf(b, 2)).toEqual(t.slotOf(a, 2))
    t.release(b)
    t.append(a, [6])
    t.appendPending(c)
    t.resolvePending(c, 5)
    // a's node is now [5, 6] and held: c keeps a slot of its own, which no match finds
    expect(t.tokensOf(c)).toEqual([1, 2, 5])
    expect(t.slotOf(c, 2)).not.toEqual(t.slotOf(a, 2))
    expect(t.match([1, 2, 5, 6]).length).toBe(4)
    const d = t.fork(a)
    t.appendPending(d)
    t.release(d, t.lengthOf(d))
    expect([...t.nodes()].every((n) => n.tokens.every((x) => x >= 0))).toBe(true)
    expect(t.stats().cachedTokens).toBe(5)
  })
})
