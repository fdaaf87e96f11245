/**
 * The rule the engine's fault safety rests on: the trie only holds tokens whose
 * KV has been written. A sequence places tokens (insert, append) before the
 * forward that writes their KV; when that forward never happens or fails, the
 * sequence is released with the count of tokens that do have KV, and the rest
 * must leave the tree. A shadow set of written prefixes is the reference: after
 * every operation each token in the tree is written, a match never counts an
 * unwritten token, and no block leaks.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { BlockPool, BlockPoolExhausted } from "../src/BlockPool.ts"
import { PrefixTree, type SeqId, type TreeNode } from "../src/PrefixTree.ts"

type Op =
  /** insert a prompt, then write the KV of only its first `write` new tokens (fewer than all: the prefill stopped) */
  | { kind: "insert"; base: number; cut: number; extra: number[]; write: number }
  | { kind: "fork"; pick: number }
  /** append tokens, then write their KV or not (a failed step: the sequence ends there) */
  | { kind: "append"; pick: number; tokens: number[]; written: boolean }
  | { kind: "release"; pick: number }
  | { kind: "evict"; blocks: number }

const tokens = (maxLength: number) => fc.array(fc.integer({ min: 0, max: 2 }), { maxLength })

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("insert" as const), base: fc.nat(), cut: fc.nat(), extra: tokens(9), write: fc.nat({ max: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("fork" as const), pick: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("append" as const), pick: fc.nat(), tokens: tokens(4), written: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("evict" as const), blocks: fc.integer({ min: 0, max: 6 }) }) }
)

const key = (tokens: ReadonlyArray<number>, position: number): string => tokens.slice(0, position + 1).join(",")

/** Every token position in the tree, as the prefix it ends. */
const cachedPrefixes = (tree: PrefixTree): Array<string> => {
  const out: Array<string> = []
  const stack: Array<{ node: TreeNode; prefix: Array<number> }> = [{ node: tree.root, prefix: [] }]
  while (stack.length > 0) {
    const { node, prefix } = stack.pop()!
    const here = [...prefix]
    for (const t of node.tokens) {
      here.push(t)
      out.push(here.join(","))
    }
    for (const child of node.children.values()) stack.push({ node: child, prefix: here })
  }
  return out
}

const blocksHeld = (tree: PrefixTree): number => {
  let n = 0
  for (const node of tree.nodes()) n += node.blocks.length
  return n
}

function run(s: { blockSize: number; numBlocks: number; ops: Array<Op> }): { trimmed: number } {
  const tree = new PrefixTree(new BlockPool({ numBlocks: s.numBlocks, blockSize: s.blockSize }))
  const live = new Map<SeqId, Array<number>>()
  const written = new Set<string>()
  const history: Array<Array<number>> = []
  let trimmed = 0
  const place = (seqTokens: ReadonlyArray<number>, from: number, writeCount: number) => {
    // Placed positions hold fresh blocks: stale "written" marks from an evicted copy do not count.
    for (let p = from; p < seqTokens.length; p++) written.delete(key(seqTokens, p))
    for (let p = from; p < Math.min(seqTokens.length, from + writeCount); p++) written.add(key(seqTokens, p))
  }
  const pick = (n: number): SeqId | undefined => [...live.keys()][n % Math.max(1, live.size)]

  for (const o of s.ops) {
    switch (o.kind) {
      case "insert": {
        const base = history[o.base % Math.max(1, history.length)] ?? []
        const full = [...base.slice(0, o.cut % (base.length + 1)), ...o.extra]
        let p
        try {
          p = tree.insert(full)
        } catch (e) {
          if (e instanceof BlockPoolExhausted) break
          throw e
        }
        // What the tree says is cached must have KV: the heart of the property.
        for (let q = 0; q < p.newStart; q++) expect(written.has(key(full, q)), `cached position ${q} of [${full}] has no KV`).toBe(true)
        place(full, p.newStart, o.write)
        history.push(full)
        const have = Math.min(full.length, p.newStart + o.write)
        if (have < full.length) {
          tree.release(p.seq, have)
          trimmed++
        } else {
          live.set(p.seq, full)
        }
        break
      }
      case "fork": {
        const seq = pick(o.pick)
        if (seq !== undefined) live.set(tree.fork(seq), live.get(seq)!)
        break
      }
      case "append": {
        const seq = pick(o.pick)
        if (seq === undefined) break
        const before = live.get(seq)!
        const full = [...before, ...o.tokens]
        let p
        try {
          p = tree.append(seq, o.tokens)
        } catch (e) {
          if (e instanceof BlockPoolExhausted) break
          throw e
        }
        for (let q = before.length; q < p.newStart; q++) expect(written.has(key(full, q))).toBe(true)
        place(full, p.newStart, o.written ? o.tokens.length : 0)
        if (o.written) {
          live.set(seq, full)
        } else {
          live.delete(seq)
          // Only what was there before the append has KV (what it matched was cached, so written too).
          tree.release(seq, p.newStart)
          trimmed++
        }
        history.push(full)
        break
      }
      case "release": {
        const seq = pick(o.pick)
        if (seq === undefined) break
        live.delete(seq)
        tree.release(seq)
        break
      }
      case "evict":
        tree.evict(o.blocks)
        break
    }
    for (const prefix of cachedPrefixes(tree)) expect(written.has(prefix), `the tree holds [${prefix}] without KV`).toBe(true)
    expect(tree.pool.used).toBe(blocksHeld(tree))
    for (const [seq, t] of live) expect(tree.tokensOf(seq)).toEqual(t)
  }
  // Nothing leaks: with every sequence released, eviction empties the pool.
  for (const seq of live.keys()) tree.release(seq)
  tree.evict(s.numBlocks)
  expect(tree.pool.used).toBe(0)
  expect([...tree.nodes()]).toHaveLength(0)
  return { trimmed }
}

describe("PrefixTree keeps only tokens whose KV is written", () => {
  it("on random operations, with sequences released after partial writes", () => {
    let trims = 0
    fc.assert(
      fc.property(
        fc.record({
          blockSize: fc.integer({ min: 1, max: 6 }),
          numBlocks: fc.integer({ min: 2, max: 24 }),
          ops: fc.array(op, { minLength: 1, maxLength: 40, size: "max" })
        }),
        (s) => {
          trims += run(s).trimmed
        }
      ),
      { numRuns: 400 }
    )
    // The property means something only if partial releases happened often.
    expect(trims).toBeGreaterThan(200)
  })

  it("drops an appended token that never got KV, keeping the rest of its node", () => {
    const tree = new PrefixTree(new BlockPool({ numBlocks: 8, blockSize: 4 }))
    const prompt = tree.insert([1, 2, 3, 4, 5])
    tree.append(prompt.seq, [6])
    tree.append(prompt.seq, [7, 8]) // the leaf grows in place: [1..8] in one node
    expect(tree.pool.used).toBe(2)
    tree.release(prompt.seq, 6) // 7 and 8 were never written
    expect(tree.match([1, 2, 3, 4, 5, 6, 7, 8]).length).toBe(6)
    expect(tree.pool.used).toBe(2)
    const again = tree.insert([1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(again.newStart).toBe(6)
    tree.release(again.seq, 6) // positions 6..8 never written: back to blocks for 6 tokens
    expect(tree.match([1, 2, 3, 4, 5, 6, 7]).length).toBe(6)
    const inner = tree.insert([1, 2, 3]) // splits the node; nothing new is placed
    tree.release(inner.seq, inner.newStart)
    expect(tree.match([1, 2, 3, 4, 5, 6]).length).toBe(6)
  })

  it("leaves tokens another live sequence holds, and drops them when that one ends the same way", () => {
    const tree = new PrefixTree(new BlockPool({ numBlocks: 8, blockSize: 4 }))
    const a = tree.insert([1, 2, 3]).seq
    const b = tree.fork(a)
    tree.append(a, [9])
    tree.append(b, [9]) // both sampled 9: one shared node, KV not yet written
    tree.release(a, 3)
    expect(tree.match([1, 2, 3, 9]).length).toBe(4) // b still holds it and would write it
    tree.release(b, 3)
    expect(tree.match([1, 2, 3, 9]).length).toBe(3)
    tree.evict(8)
    expect(tree.pool.used).toBe(0)
  })

  it("refuses a written count outside the sequence", () => {
    const tree = new PrefixTree(new BlockPool({ numBlocks: 4, blockSize: 4 }))
    const s = tree.insert([1, 2]).seq
    expect(() => tree.release(s, 3)).toThrow(RangeError)
    expect(() => tree.release(s, -1)).toThrow(RangeError)
    expect(tree.isLive(s)).toBe(true)
  })
})
