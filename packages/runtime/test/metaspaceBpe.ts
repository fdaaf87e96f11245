/**
 * A SentencePiece-style tokenizer.json for tests, as Llama's are converted:
 * a Metaspace pre-tokenizer (spaces become "▁", one "▁" put before the text
 * when it does not start with one, no split at spaces) over a small BPE
 * vocabulary with a merge across a word boundary ("▁upon ▁a"). Tokenizing
 * pieces one by one and joining their tokens is then not tokenizing the
 * joined text: "Once upon" + " a time" gives ▁Once ▁upon | ▁a ▁time, "Once
 * upon a time" gives ▁Once ▁upon▁a ▁time; and a piece that starts inside a
 * word ("Once up" + "on") gets a "▁" of its own.
 */
import { type TextTokenizer, tokenizerFromJson } from "../src/model/tokenizer.ts"

const SPECIALS = ["<unk>", "<s>", "</s>"] as const

/** The characters the vocabulary spells; any other becomes <unk>. */
const ALPHABET = ["▁", "O", "n", "c", "e", "u", "p", "o", "a", "t", "i", "m"] as const

/** In rank order: each pair's parts are tokens by the time it applies. */
const MERGES: ReadonlyArray<readonly [string, string]> = [
  ["▁", "O"], ["n", "c"], ["nc", "e"], ["▁O", "nce"],
  ["u", "p"], ["o", "n"], ["up", "on"], ["▁", "upon"],
  ["▁", "a"], ["▁upon", "▁a"],
  ["t", "i"], ["m", "e"], ["ti", "me"], ["▁", "time"],
  ["▁", "on"]
]

/** Specials, then the alphabet, then one token per merge: a token's index is its id. */
const TOKENS: ReadonlyArray<string> = [...SPECIALS, ...ALPHABET, ...MERGES.map(([a, b]) => a + b)]

/** The id of a token of the vocabulary, spelt with "▁" (`metaspaceId("▁upon▁a")`). */
export const metaspaceId = (token: string): number => {
  const id = TOKENS.indexOf(token)
  if (id < 0) throw new RangeError(`${JSON.stringify(token)} is not in the fixture's vocabulary`)
  return id
}

/** The tokenizer.json, a fresh object each call. */
export const metaspaceBpeJson = (): object => ({
  version: "1.0",
  added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: null,
  pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
  post_processor: null,
  decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
  model: {
    type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: false,
    vocab: Object.fromEntries(TOKENS.map((t, id) => [t, id])),
    merges: MERGES.map(([a, b]) => `${a} ${b}`)
  }
})

export const METASPACE_CONFIG = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" }

/** The fixture as the engine's tokenizer: BOS <s>, EOS </s>, and as many ids as a model over it needs. */
export const metaspaceBpe = (): TextTokenizer => tokenizerFromJson(metaspaceBpeJson(), METASPACE_CONFIG)
