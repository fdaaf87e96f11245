/**
 * A Hugging Face model folder end to end, through the command line: config.json,
 * sharded bf16 safetensors and a BPE tokenizer.json written by the test, then
 * `canopy generate --model DIR` compared with the float64 CPU reference over
 * the same weights and the same tokenization.
 */
import {
  loadHostWeights, type ModelConfig, referenceLogits, saveModel, synthesizeHostWeights, tokenizerFromJson
} from "@canopy/runtime"
import { spawnSync } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scaled } from "./limits.ts"

/** A tiny byte-level BPE: bytes a, b, c, Ġ (space), with merges up to "Ġabc". */
const tokenizerJson = {
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
const tokenizerConfig = { bos_token: "<s>", eos_token: "</s>" }

const config: ModelConfig = {
  architecture: "Qwen2ForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 8, rmsNormEps: 1e-6, ropeTheta: 1_000_000, ropeScaling: { type: "none" }, vocabSize: 10,
  tieWordEmbeddings: true, attentionBias: true, maxPositionEmbeddings: 4096, bosTokenId: 0, eosTokenIds: [1]
}

const root = fileURLToPath(new URL("../../..", import.meta.url))
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "canopy-model-folder-"))
  await saveModel(dir, config, synthesizeHostWeights(config, 5), { dtype: "BF16", shards: 2 })
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson))
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig))
  await writeFile(join(dir, "tree.json"), JSON.stringify({ text: "abc abc", children: [{ text: " a", samples: 2 }, { text: " abc", samples: 1 }] }))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe("a Hugging Face model folder through canopy generate", () => {
  it("says a missing or empty folder is that, naming every missing file", async () => {
    const empty = await mkdtemp(join(tmpdir(), "canopy-empty-model-"))
    try {
      const run = (model: string) =>
        spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", "generate", "--model", model, "--tree", join(dir, "tree.json")],
          { cwd: root, encoding: "utf8" })
      const missing = run(join(empty, "nope"))
      expect(missing.stderr.trim()).toBe(`canopy: ModelFileError: ${join(empty, "nope")}: model folder does not exist`)
      expect(missing.status).toBe(2)
      const none = run(empty)
      expect(none.stderr.trim()).toBe(`canopy: ModelFileError: ${empty}: model folder is missing config.json, ` +
        "the weights (model.safetensors or model.safetensors.index.json) and tokenizer.json")
      expect(none.status).toBe(2)
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })

  it("gives the reference's greedy tokens, with the folder's tokenizer and its progress shown", async () => {
    const maxTokens = 4
    const r = spawnSync(
      "node",
      ["--import", "tsx", "packages/examples/src/cli/main.ts", "generate", "--model", dir, "--tree", join(dir, "tree.json"),
        "--temperature", "0", "--max-tokens", String(maxTokens), "--json"],
      // spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
      { cwd: root, encoding: "utf8", timeout: scaled(60_000) }
    )
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toContain("loading weights:")
    const result = JSON.parse(r.stdout) as { completions: Array<{ path: Array<number>; tokens: Array<number>; text: string }> }
    expect(result.completions.map((c) => c.path)).toEqual([[0], [0], [1]])

    // the same weights (bf16 on disk, widened to f32) and the same per-node tokenization
    const { weights } = await loadHostWeights(dir)
    const tokenizer = tokenizerFromJson(tokenizerJson, tokenizerConfig)
    const prompts = [" a", " abc"].map((child) => [...tokenizer.encode("abc abc"), ...tokenizer.encode(child, { addBos: false })])
    expect(prompts[0]![0]).toBe(0)
    let compared = 0
    for (const c of result.completions) {
      const context = [...prompts[c.path[0]!]!]
      for (const [step, token] of c.tokens.entries()) {
        const logits = referenceLogits(config, weights, context).at(-1)!
        const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b)
        if (logits[order[0]!]! - logits[order[1]!]! < 1e-3) break // a near tie: f32 may pick either
        if (order[0] === 1) break // end of sequence: the completion stops before it
        expect(token, `step ${step} of ${JSON.stringify(c)}`).toBe(order[0])
        context.push(token)
        compared++
      }
      expect(c.text).toBe(tokenizer.decode(c.tokens))
    }
    expect(compared).toBeGreaterThan(0)
  })
})
