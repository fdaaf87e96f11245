/**
 * The engine's decode-step inputs (DecodeBatchBuilder) against what each row
 * asks for, worked out from the tree on its own: every row's token or feed,
 * position, slot and sampling, and a slot's KV written by one row only, the
 * first that claims it in a step, and by none where it is written already.
 */
import { NO_FEED, type SamplingParams } from "@canopy/kernels"
import { BlockPool, PrefixTree, type SeqId } from "@canopy/tree-cache"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { DecodeBatchBuilder, type DecodeRow, NO_WRITE } from "../src/engine/decodeBatch.ts"

const sampling = (r: number): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, seed: 7, sequence: r, step: 0 })

/** What the inputs must be, from slotOf and a set of claimed slots built for the step. */
const expected = (tree: PrefixTree, rows: ReadonlyArray<DecodeRow>) => {
  const claimed = new Set<string>()
  return rows.map((row) => {
    const position = tree.lengthOf(row.seq) - 1
    const { block, slot } = tree.slotOf(row.seq, position)
    const key = `${block}:${slot}`
    const writes = row.written <= position && !claimed.has(key)
    claimed.add(key)
    return { token: row.token, position, block: writes ? block : NO_WRITE, slot, feed: row.feed ?? NO_FEED }
  })
}

const actual = (builder: DecodeBatchBuilder, rows: ReadonlyArray<DecodeRow>) => {
  const b = builder.inputs(rows)
  expect(b.seqs).toEqual(rows.map((r) => r.seq))
  expect(Array.from(b.logitRows)).toEqual(rows.map((_, r) => r))
  expect(b.sampling).toEqual(rows.map((r) => r.sampling))
  expect(b.feed !== undefined).toBe(rows.some((r) => r.feed !== undefined))
  return rows.map((_, r) => ({
    token: b.tokens[r], position: b.positions[r], block: b.slots[2 * r], slot: b.slots[2 * r + 1], feed: b.feed?.[r] ?? NO_FEED
  }))
}

describe("DecodeBatchBuilder", () => {
  it("writes a shared slot once, and not at all where its KV is written", () => {
    const tree = new PrefixTree(new BlockPool({ numBlocks: 16, blockSize: 4 }))
    const prompt = tree.insert([1, 2, 3, 4, 5]).seq
    const a = tree.fork(prompt)
    const b = tree.fork(prompt)
    tree.append(a, [6])
    tree.append(b, [6]) // follows a's node: the same slot
    const rows: Array<DecodeRow> = [
      { seq: prompt, token: 5, written: 5, sampling: sampling(0) },
      { seq: a, token: 6, written: 5, sampling: sampling(1) },
      { seq: b, token: 6, written: 5, sampling: sampling(2), feed: 1 }
    ]
    const builder = new DecodeBatchBuilder(tree)
    const got = actual(builder, rows)
    expect(got.map((r) => r.block === NO_WRITE)).toEqual([true, false, true])
    expect(got).toEqual(expected(tree, rows))
    // a later step's claims start over
    expect(actual(builder, rows.slice(2))).toEqual(expected(tree, rows.slice(2)))
    expect(actual(builder, rows.slice(2))[0]!.block).not.toBe(NO_WRITE)
  })

  it("matches the tree's own slots on random trees and rows", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.record({ prompt: fc.integer({ min: 0, max: 3 }), tokens: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 12 }) }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.record({ pick: fc.nat(), behind: fc.boolean(), feed: fc.option(fc.nat({ max: 40 }), { nil: undefined }) }), { minLength: 1, maxLength: 24 }),
        (blockSize, samples, picks) => {
          const tree = new PrefixTree(new BlockPool({ numBlocks: 256, blockSize }))
          const prompts = [[9], [9, 8, 7], [9, 8, 6, 5, 4], [3]].map((p) => tree.insert(p).seq)
          const seqs: Array<SeqId> = samples.map((s) => {
            const seq = tree.fork(prompts[s.prompt]!)
            if (s.tokens.length > 0) tree.append(seq, s.tokens)
            return seq
          })
          const builder = new DecodeBatchBuilder(tree)
          for (let step = 0; step < 2; step++) {
            const rows = picks.map((p, r): DecodeRow => {
              const seq = seqs[p.pick % seqs.length]!
              const length = tree.lengthOf(seq)
              return { seq, token: r, written: p.behind ? length - 1 : length, sampling: sampling(r), ...(p.feed === undefined ? {} : { feed: p.feed }) }
            })
            expect(actual(builder, rows)).toEqual(expected(tree, rows))
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
