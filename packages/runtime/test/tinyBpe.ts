/**
 * A tiny byte-level BPE tokenizer.json for tests: ids 0 to 9 — <s>, </s>,
 * bytes a, b, c, Ġ (space), and merges up to "Ġabc".
 */
export const tinyBpe = {
  version: "1.0",
  added_tokens: [
    { id: 0, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }
  ],
  normalizer: null,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: null,
  decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false,
    vocab: { "<s>": 0, "</s>": 1, a: 2, b: 3, c: 4, "Ġ": 5, ab: 6, abc: 7, "Ġabc": 8, "Ġa": 9 },
    merges: ["a b", "ab c", "Ġ a", "Ġa bc"]
  }
}
