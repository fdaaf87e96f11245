/**
 * The incremental stop-string check against its definition: after each
 * token, the text of all tokens so far contains a stop string. Random token
 * sequences on three decoders — bytes (multi-byte characters split across
 * tokens, bytes that are no UTF-8, tokens that decode to nothing), a
 * byte-level BPE, and a SentencePiece-style decoder (a token's leading space
 * dropped at the start of the text, byte fallback) — with stop strings drawn
 * from the text itself and at random.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { StopMatcher } from "../src/engine/stops.ts"
import { byteTokenizer, type TextTokenizer, tokenizerFromJson } from "../src/model/tokenizer.ts"
import { tinyBpe } from "./tinyBpe.ts"

/** Llama's decoder on a small vocabulary: ▁ for spaces, the first space stripped, bytes <0xE2> <0x82> <0xAC> spelling "€". */
const tinySentencePiece = {
  version: "1.0",
  added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: null,
  pre_tokenizer: null,
  post_processor: null,
  decoder: {
    type: "Sequence",
    decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 }
    ]
  },
  model: {
    type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
    vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "▁a": 3, b: 4, "▁": 5, a: 6, "<0xE2>": 7, "<0x82>": 8, "<0xAC>": 9, "▁b": 10 },
    merges: ["▁ a", "▁ b"]
  }
}

const definition = (tokenizer: TextTokenizer, stops: ReadonlyArray<string>, tokens: ReadonlyArray<number>): boolean => {
  const text = tokenizer.decode(tokens)
  return stops.some((s) => text.includes(s))
}

/** Feeds `tokens` one at a time, as the engine does (one array, growing), and compares every answer with the definition. */
const expectDefinition = (tokenizer: TextTokenizer, stops: ReadonlyArray<string>, tokens: ReadonlyArray<number>): void => {
  const matcher = new StopMatcher(stops, tokenizer)
  const sample: Array<number> = []
  for (const token of tokens) {
    sample.push(token)
    expect(matcher.matches(sample), `after ${JSON.stringify(sample)}, stops ${JSON.stringify(stops)}`).toBe(definition(tokenizer, stops, sample))
  }
}

/** Stop strings: pieces of the tokens' text (so that some match, across token boundaries), random strings, U+FFFD. */
const arbitraryStops = (tokenizer: TextTokenizer, tokens: ReadonlyArray<number>) => {
  const text = tokenizer.decode(tokens)
  const piece = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 6 })).map(([at, n]) => {
    const start = text.length === 0 ? 0 : at % text.length
    return text.slice(start, start + n) || "a"
  })
  const random = fc.string({ unit: "grapheme", minLength: 1, maxLength: 4 })
  return fc.array(fc.oneof(piece, random, fc.constantFrom("\uFFFD", "€", " b", "a a")), { minLength: 1, maxLength: 3 })
}

const bytes = byteTokenizer(300)
/** Byte tokens: the UTF-8 of random text (characters split over tokens), any byte, BOS/EOS and ids that decode to nothing. */
const byteTokens = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }).map((s) => Array.from(new TextEncoder().encode(s))) },
      { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.array(fc.integer({ min: 256, max: 299 }), { maxLength: 2 }) }
    ),
    { maxLength: 12 }
  )
  .map((runs) => runs.flat())

describe("StopMatcher", () => {
  it("matches as the whole text does, on byte tokens", () => {
    fc.assert(
      fc.property(byteTokens.chain((tokens) => fc.tuple(fc.constant(tokens), arbitraryStops(bytes, tokens))), ([tokens, stops]) =>
        expectDefinition(bytes, stops, tokens)),
      { numRuns: 500 }
    )
  })

  for (const [name, json] of [["a byte-level BPE", tinyBpe], ["a SentencePiece-style decoder", tinySentencePiece]] as const) {
    it(`matches as the whole text does, on ${name}`, () => {
      const tokenizer = tokenizerFromJson(json)
      const ids = fc.array(fc.integer({ min: 0, max: tokenizer.vocabSize - 1 }), { maxLength: 30 })
      fc.assert(
        fc.property(ids.chain((tokens) => fc.tuple(fc.constant(tokens), arbitraryStops(tokenizer, tokens))), ([tokens, stops]) =>
          expectDefinition(tokenizer, stops, tokens)),
        { numRuns: 300 }
      )
    })
  }

  it("finds stops split across tokens: a multi-byte character's bytes, and SentencePiece's spaces", () => {
    const euro = Array.from(new TextEncoder().encode("x€€y"))
    const matcher = new StopMatcher(["€€"], bytes)
    expect(euro.map((_, i) => matcher.matches(euro.slice(0, i + 1)))).toEqual([false, false, false, false, false, false, true, true])
    const sp = tokenizerFromJson(tinySentencePiece)
    // "a b": the second token's space is only there after the first
    expect(new StopMatcher(["a b"], sp).matches([3, 10])).toBe(true)
    expect(new StopMatcher([" b"], sp).matches([10])).toBe(false)
  })

  it("decodes a few tokens per new token, whatever the length of the sample or of the stops", () => {
    const decoded: Array<number> = []
    const counting: TextTokenizer = { ...bytes, decode: (ids) => (decoded.push(ids.length), bytes.decode(ids)) }
    const tokens = Array.from(new TextEncoder().encode("a stop string that never comes: ✓ 🌲 é ".repeat(30)))
    const matcher = new StopMatcher(["never, not in this text at all, a long stop string"], counting)
    const sample: Array<number> = []
    for (const t of tokens) {
      sample.push(t)
      expect(matcher.matches(sample)).toBe(false)
    }
    // two decodes a token, of the token and the group before it: at most 4 bytes each (a 4-byte character held until whole)
    expect(Math.max(...decoded)).toBeLessThanOrEqual(8)
    expect(decoded.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(6 * tokens.length)
  })

  it("starts over on a shorter sample, and keeps finalText's cut before the first stop", () => {
    const matcher = new StopMatcher(["ab"], bytes)
    expect(matcher.matches([97, 98])).toBe(true)
    expect(matcher.matches([99])).toBe(false)
    expect(matcher.matches([99, 97, 98])).toBe(true)
    expect(new StopMatcher(["b", "cd"], bytes).finalText(bytes.encode("xxcdab", { addBos: false }))).toBe("xx")
    expect(new StopMatcher([], bytes).matches([97])).toBe(false)
  })
})
