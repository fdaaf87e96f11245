/**
 * A small Hugging Face model folder for the picker test: config.json, bf16
 * safetensors in two shards with their index, and a byte-level BPE
 * tokenizer.json of a few tokens (ids 0 to 9: <s>, </s>, a, b, c, Ġ, and
 * merges up to "Ġabc").
 */
import { type ModelConfig, saveModel, synthesizeHostWeights } from "@canopy/runtime"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"

export const FOLDER_CONFIG: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: "none" }, vocabSize: 10,
  tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 256, bosTokenId: 0, eosTokenIds: [1]
}

const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }

const TOKENIZER = {
  version: "1.0",
  added_tokens: ["<s>", "</s>"].map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: null,
  pre_tokenizer: byteLevel,
  post_processor: null,
  decoder: byteLevel,
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
    vocab: { "<s>": 0, "</s>": 1, a: 2, b: 3, c: 4, "Ġ": 5, ab: 6, abc: 7, "Ġabc": 8, "Ġa": 9 },
    merges: ["a b", "ab c", "Ġ a", "Ġa bc"]
  }
}

export const writeModelFolder = async (dir: string): Promise<void> => {
  await saveModel(dir, FOLDER_CONFIG, synthesizeHostWeights(FOLDER_CONFIG, 7), { dtype: "BF16", shards: 2 })
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(TOKENIZER))
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }))
}
