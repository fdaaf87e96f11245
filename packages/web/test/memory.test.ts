/**
 * The KV figures against a count made another way: every prompt token of
 * every sample listed as (node, offset) pairs; a per-sequence cache holds
 * them all, the tree holds each distinct pair once.
 */
import { byteTokenizer, type PromptTree, PRESETS } from "@canopy/runtime/browser"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { describeKv, formatBytes, kvBytesPerToken, kvFigures } from "../src/memory.ts"
import { drawnTree } from "../src/tree.ts"

const treeOf = (depth: number): fc.Arbitrary<PromptTree> => fc.record({
  text: fc.string({ maxLength: 8 }),
  samples: fc.nat(3),
  children: depth === 0 ? fc.constant([]) : fc.array(treeOf(depth - 1), { maxLength: 3 })
})

/** Every sample's prompt tokens as "node/offset" names, one list per sample. */
const sequences = (tree: PromptTree): Array<Array<string>> => {
  const tokenizer = byteTokenizer(260)
  const out: Array<Array<string>> = []
  const walk = (node: PromptTree, id: string, above: Array<string>, root: boolean): void => {
    const own = tokenizer.encode(node.text ?? "", { addBos: root }).map((_, i) => `${id}/${i}`)
    const prompt = [...above, ...own]
    for (let s = 0; s < (node.samples ?? 0); s++) out.push(prompt)
    ;(node.children ?? []).forEach((child, i) => walk(child, `${id}.${i}`, prompt, false))
  }
  walk(tree, "r", [], true)
  return out
}

describe("the KV figures", () => {
  it("count the distinct prompt tokens of the sampled paths once, and a per-sequence cache's every copy", () => {
    fc.assert(fc.property(treeOf(3), fc.nat(500), fc.integer({ min: 1, max: 4096 }), (tree, generated, perToken) => {
      const seqs = sequences(tree)
      expect(kvFigures(drawnTree(tree, byteTokenizer(260)), generated, perToken)).toEqual({
        treeBytes: (new Set(seqs.flat()).size + generated) * perToken,
        perSequenceBytes: (seqs.reduce((n, s) => n + s.length, 0) + generated) * perToken
      })
    }))
  })

  it("price a token at K and V for every layer and KV head", () => {
    expect(kvBytesPerToken(PRESETS.tiny, "f16")).toBe(2 * 2 * 2 * 16 * 2)
    expect(kvBytesPerToken(PRESETS["codellama-7b"], "f32")).toBe(2 * 32 * 32 * 128 * 4)
  })

  it("say the sizes in binary units", () => {
    expect([0, 1023, 1024, 1536, 5 * 2 ** 20, 3 * 2 ** 30].map(formatBytes)).toEqual(["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB"])
    expect(describeKv({ treeBytes: 1024, perSequenceBytes: 4096 })).toBe(
      "KV cache 1.0 KiB in the tree vs 4.0 KiB per sequence: 3.0 KiB (75%) saved by sharing the prompts"
    )
  })
})
