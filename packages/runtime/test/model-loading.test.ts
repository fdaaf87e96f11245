/**
 * Mistaken and hostile model folders, loaded through loadModel with a device
 * that throws on first use: every fault must be a typed error raised before
 * the GPU is touched, and a sound folder must get as far as the GPU.
 */
import fc from "fast-check"
import { execFileSync } from "node:child_process"
import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from "node:fs/promises"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { configToJson, type ModelConfig } from "../src/model/config.ts"
import { ModelConfigError, ModelFileError, TensorShapeMismatch, TokenizerError } from "../src/model/errors.ts"
import { MAX_CONFIG_BYTES } from "../src/model/files.ts"
import { checkModelSource, loadModel } from "../src/model/model.ts"
import { writeSafetensors } from "../src/model/safetensors.ts"
import { saveModel } from "../src/model/synthetic.ts"
import { elementCount, tensorSpecs } from "../src/model/tensors.ts"
import { synthesizeHostWeights } from "../src/model/weights.ts"
import { tinyBpe } from "./tinyBpe.ts"


const small: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 8, intermediateSize: 12, numLayers: 2, numHeads: 2, numKvHeads: 1,
  headDim: 4, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: "none" }, vocabSize: 10,
  tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 64, bosTokenId: 0, eosTokenIds: [1]
}

class GpuTouched extends Error {}
/** A device that fails the test's expectations the moment anything reads it. */
const untouchable = new Proxy({}, {
  get: (_target, key) => {
    throw new GpuTouched(`the GPU was touched (${String(key)})`)
  }
}) as unknown as GPUDevice

const outcome = (dir: string): Promise<unknown> =>
  loadModel(untouchable, { kind: "folder", dir }).then(() => new Error("loaded without touching the GPU"), (e: unknown) => e)

/** The error a folder fails with; it must be of class `type`. */
const failure = async <E extends Error>(dir: string, type: new (...args: never) => E): Promise<E> => {
  const e = await outcome(dir)
  expect(e).toBeInstanceOf(type)
  return e as E
}

let root: string
let count = 0
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "canopy-loading-"))
})
afterAll(() => rm(root, { recursive: true, force: true }))

const fresh = async (): Promise<string> => {
  const dir = join(root, `m${count++}`)
  await mkdir(dir)
  return dir
}

/** A complete folder for `config` (its weights in `shards` files) with the tokenizer. */
const folder = async (config: ModelConfig = small, shards = 1): Promise<string> => {
  const dir = join(root, `m${count++}`)
  await saveModel(dir, config, synthesizeHostWeights(config, 1), { shards })
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tinyBpe))
  return dir
}

/** Rewrites config.json as `small`'s with `patch` applied; string values are written as raw JSON. */
const patchConfig = (dir: string, patch: Record<string, unknown>): Promise<void> => {
  const fields: Array<string> = []
  for (const [key, value] of Object.entries({ ...configToJson(small), ...patch })) {
    fields.push(`${JSON.stringify(key)}: ${typeof value === "string" && key !== "hidden_act" ? value : JSON.stringify(value)}`)
  }
  return writeFile(join(dir, "config.json"), `{\n  ${fields.join(",\n  ")}\n}\n`)
}

describe("a sound folder", () => {
  it("passes every check and reaches the GPU (sharded too, and through symbolic links)", async () => {
    expect(await outcome(await folder())).toBeInstanceOf(GpuTouched)
    expect(await outcome(await folder(small, 2))).toBeInstanceOf(GpuTouched)
    const linked = await fresh()
    const real = await folder()
    for (const name of ["config.json", "model.safetensors", "tokenizer.json"]) await symlink(join(real, name), join(linked, name))
    expect(await outcome(linked)).toBeInstanceOf(GpuTouched)
  })
})

describe("checks without a device", () => {
  it("checkModelSource passes a sound folder and refuses a faulty one with loadModel's error", async () => {
    const dir = await folder()
    await expect(checkModelSource({ kind: "folder", dir })).resolves.toBeUndefined()
    await patchConfig(dir, { num_hidden_layers: 3 })
    await expect(checkModelSource({ kind: "folder", dir })).rejects.toThrow(
      "config.json: num_hidden_layers: 3 declares model.layers.2, which has no tensors; tensors: 2 layers, model.layers.0 to model.layers.1"
    )
  })

  it("refuses a synthetic config built in code with an absurd size before touching the GPU", async () => {
    const source = { kind: "synthetic", model: { ...small, numLayers: 100000000 }, seed: 0 } as const
    const e = await loadModel(untouchable, source).catch((e: unknown) => e)
    expect(e).toBeInstanceOf(ModelConfigError)
    expect((e as Error).message).toBe("config.json: num_hidden_layers: 100000000 is above the limit of 1024")
    await expect(checkModelSource(source)).rejects.toThrow(ModelConfigError)
    await expect(checkModelSource({ kind: "synthetic", model: "tiny", seed: 0 })).resolves.toBeUndefined()
  })
})

describe("the folder and its files", () => {
  it("says the folder does not exist, or is not a folder", async () => {
    const missing = join(root, "no-such-model")
    expect((await failure(missing, ModelFileError)).message).toBe(`${missing}: model folder does not exist`)
    const file = join(root, "a-file")
    await writeFile(file, "{}")
    expect((await failure(file, ModelFileError)).message).toBe(`${file}: is a regular file, not a model folder`)
  })

  it("lists every missing file in one message", async () => {
    const empty = await fresh()
    const e = await failure(empty, ModelFileError)
    expect(e.message).toBe(
      `${empty}: model folder is missing config.json, the weights (model.safetensors or model.safetensors.index.json) and tokenizer.json`
    )
    expect(e.missing).toEqual(["config.json", "the weights (model.safetensors or model.safetensors.index.json)", "tokenizer.json"])
    const noTokenizer = await folder()
    await unlink(join(noTokenizer, "tokenizer.json"))
    expect((await failure(noTokenizer, ModelFileError)).message).toBe(`${noTokenizer}: model folder is missing tokenizer.json`)
    const onlyTokenizer = await fresh()
    await writeFile(join(onlyTokenizer, "tokenizer.json"), JSON.stringify(tinyBpe))
    expect((await failure(onlyTokenizer, ModelFileError)).message).toBe(
      `${onlyTokenizer}: model folder is missing config.json and the weights (model.safetensors or model.safetensors.index.json)`
    )
  })

  it("refuses a config.json above its size cap without reading it", async () => {
    const dir = await folder()
    await writeFile(join(dir, "config.json"), new Uint8Array(MAX_CONFIG_BYTES + 1))
    expect((await failure(dir, ModelFileError)).message)
      .toBe(`${join(dir, "config.json")}: is ${MAX_CONFIG_BYTES + 1} bytes, above the ${MAX_CONFIG_BYTES}-byte limit for this file`)
  })

  it.skipIf(process.platform === "win32")("refuses a FIFO, socket, device or directory in place of a file, naming it", async () => {
    const fifo = async (path: string): Promise<void> => void execFileSync("mkfifo", [path])
    const cases: Array<readonly [string, (path: string) => Promise<void>, string]> = [
      ["model.safetensors", fifo, "a FIFO"],
      ["model.safetensors", (path) => symlink("/dev/null", path), "a character device"],
      ["model.safetensors", (path) => mkdir(path), "a directory"],
      ["config.json", fifo, "a FIFO"],
      ["tokenizer.json", fifo, "a FIFO"],
      ["tokenizer_config.json", fifo, "a FIFO"]
    ]
    for (const [name, make, kind] of cases) {
      const dir = await folder()
      await rm(join(dir, name), { force: true })
      await make(join(dir, name))
      expect((await failure(dir, ModelFileError)).message, name).toBe(`${join(dir, name)}: is ${kind}, not a regular file`)
    }
    const servers: Array<Server> = []
    try {
      const dir = await folder()
      await unlink(join(dir, "model.safetensors"))
      const server = createServer()
      servers.push(server)
      await new Promise<void>((resolve) => server.listen(join(dir, "model.safetensors"), resolve))
      expect((await failure(dir, ModelFileError)).message).toBe(`${join(dir, "model.safetensors")}: is a socket, not a regular file`)
    } finally {
      for (const s of servers) s.close()
    }
    // a shard named by the index, and the index itself
    const sharded = await folder(small, 2)
    const shard = join(sharded, "model-00002-of-00002.safetensors")
    await unlink(shard)
    await fifo(shard)
    expect((await failure(sharded, ModelFileError)).message).toBe(`${shard}: is a FIFO, not a regular file`)
    const indexed = await folder(small, 2)
    const index = join(indexed, "model.safetensors.index.json")
    await unlink(index)
    await mkdir(index)
    expect((await failure(indexed, ModelFileError)).message).toBe(`${index}: is a directory, not a regular file`)
  })
})

describe("config.json against the tensors", () => {
  it("refuses an absurd layer count without allocating for it", async () => {
    const dir = await folder()
    await patchConfig(dir, { num_hidden_layers: 100000000 })
    expect((await failure(dir, ModelConfigError)).message).toBe(
      "config.json: num_hidden_layers: 100000000 is above the limit of 1024; tensors: 2 layers, model.layers.0 to model.layers.1"
    )
  })

  it("names the field, its value and what the tensors hold", async () => {
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
      [{ num_hidden_layers: 3 }, "num_hidden_layers: 3 declares model.layers.2, which has no tensors; tensors: 2 layers, model.layers.0 to model.layers.1"],
      [{ num_hidden_layers: 1 }, "num_hidden_layers: 1 leaves model.layers.1 unused; tensors: 2 layers, model.layers.0 to model.layers.1"],
      [{ hidden_size: 16 }, "hidden_size: 16 does not match the tensors; tensors: model.embed_tokens.weight is [10, 8]"],
      [{ vocab_size: 12 }, "vocab_size: 12 does not match the tensors; tensors: model.embed_tokens.weight is [10, 8]"],
      [{ intermediate_size: 16 }, "intermediate_size: 16 does not match the tensors; tensors: model.layers.0.mlp.gate_proj.weight is [12, 8]"],
      [{ num_attention_heads: 4 },
        "num_attention_heads: 4 heads × head_dim 4 = 16 rows does not match the tensors; tensors: model.layers.0.self_attn.q_proj.weight is [8, 8]"],
      [{ num_key_value_heads: 2 },
        "num_key_value_heads: 2 heads × head_dim 4 = 8 rows does not match the tensors; tensors: model.layers.0.self_attn.k_proj.weight is [4, 8]"],
      [{ head_dim: 2 }, "head_dim: 2 (with num_attention_heads 2, num_key_value_heads 1) does not match the tensors; " +
        "tensors: model.layers.0.self_attn.q_proj.weight is [8, 8], model.layers.0.self_attn.k_proj.weight is [4, 8]"],
      [{ max_position_embeddings: 1000000000 }, "max_position_embeddings: 1000000000 is above the limit of 16777216"],
      [{ hidden_size: 65537 }, "hidden_size: 65537 is above the limit of 65536; tensors: model.embed_tokens.weight is [10, 8]"]
    ]
    for (const [patch, message] of cases) {
      const dir = await folder()
      await patchConfig(dir, patch)
      expect((await failure(dir, ModelConfigError)).message, JSON.stringify(patch)).toBe(`config.json: ${message}`)
    }
  })

  it("finds a layer missing from the middle, and a later layer whose shape disagrees", async () => {
    const three: ModelConfig = { ...small, numLayers: 3 }
    const host = synthesizeHostWeights(three, 1)
    const gap = await folder(three)
    await writeSafetensors(gap, tensorSpecs(three).filter((s) => !s.name.startsWith("model.layers.1."))
      .map((s) => ({ name: s.name, shape: s.shape, data: host.get(s.name)! })))
    expect((await failure(gap, ModelConfigError)).message).toBe(
      "config.json: num_hidden_layers: 3 declares model.layers.1, which has no tensors; tensors: 2 layers, some of model.layers.0 to model.layers.2"
    )
    const bent = await folder()
    await writeSafetensors(bent, tensorSpecs(small).map((s) =>
      s.name === "model.layers.1.mlp.down_proj.weight" ? { name: s.name, shape: [8, 6], data: new Float32Array(48) } : { ...s, data: new Float32Array(elementCount(s.shape)) }))
    expect((await failure(bent, TensorShapeMismatch)).message).toBe("tensor model.layers.1.mlp.down_proj.weight: expected shape [8, 12], found [8, 6]")
    const lacking = await folder()
    await writeSafetensors(lacking, tensorSpecs(small).filter((s) => s.name !== "model.layers.1.self_attn.v_proj.weight")
      .map((s) => ({ ...s, data: new Float32Array(elementCount(s.shape)) })))
    expect((await failure(lacking, TensorShapeMismatch)).message).toBe("tensor model.layers.1.self_attn.v_proj.weight (shape [4, 8]) is missing")
  })

  it("shows a non-finite or fractional size as written", async () => {
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
      [{ num_hidden_layers: "1e999" }, "num_hidden_layers: must be a positive integer, found 1e999; tensors: 2 layers, model.layers.0 to model.layers.1"],
      [{ hidden_size: "8.5" }, "hidden_size: must be a positive integer, found 8.5; tensors: model.embed_tokens.weight is [10, 8]"],
      [{ vocab_size: "-1E400" }, "vocab_size: must be a positive integer, found -1E400; tensors: model.embed_tokens.weight is [10, 8]"],
      [{ max_position_embeddings: "1e999" }, "max_position_embeddings: must be a positive integer, found 1e999"],
      [{ rope_theta: "1e999" }, "rope_theta: must be a positive number, found 1e999"],
      [{ eos_token_id: "[1, 1e999]" }, "eos_token_id: must be a token id or a list of them, found [1, 1e999]"]
    ]
    for (const [patch, message] of cases) {
      const dir = await folder()
      await patchConfig(dir, patch)
      expect((await failure(dir, ModelConfigError)).message, JSON.stringify(patch)).toBe(`config.json: ${message}`)
    }
  })

  /** config.json's fields that the tensors fix, with `small`'s values. */
  const bound: Record<string, number> = {
    num_hidden_layers: 2, hidden_size: 8, intermediate_size: 12, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, vocab_size: 10
  }
  const literal = fc.oneof(
    fc.integer({ min: -3, max: 40 }).map(String),
    fc.integer({ min: 0, max: 2 ** 31 }).map(String),
    fc.constantFrom("1e999", "-1e999", "1e308", "2.5", "0", "null", "\"8\"", "true", "[]", "{}", "100000000", "9007199254740993", "8.0")
  )

  it("gives a typed error for any mismatch of config.json's sizes, and never touches the GPU for one", async () => {
    const dir = await folder()
    await fc.assert(fc.asyncProperty(
      fc.dictionary(fc.constantFrom(...Object.keys(bound), "max_position_embeddings"), literal, { minKeys: 1, maxKeys: 3 }),
      async (patch) => {
        await patchConfig(dir, patch)
        const e = await outcome(dir)
        // the sizes in effect once the patch is applied, defaults included
        const effective: Record<string, unknown> = { ...bound }
        for (const [k, v] of Object.entries(patch)) effective[k] = JSON.parse(v)
        effective["num_key_value_heads"] ??= effective["num_attention_heads"]
        if (effective["head_dim"] === null) effective["head_dim"] = Number(effective["hidden_size"]) / Number(effective["num_attention_heads"])
        const unchanged = Object.keys(bound).every((k) => effective[k] === bound[k])
        if (e instanceof GpuTouched) {
          expect(unchanged).toBe(true)
          return
        }
        expect(e instanceof ModelConfigError || e instanceof TensorShapeMismatch, String(e)).toBe(true)
        const keys = Object.keys(patch)
        if (keys.length === 1 && e instanceof ModelConfigError) {
          expect([keys[0], ...(keys[0] === "vocab_size" ? ["bos_token_id", "eos_token_id"] : [])]).toContain(e.field)
          expect(e.message.startsWith(`config.json: ${e.field}: `)).toBe(true)
        }
      }
    ), { numRuns: 150 })
  })

  it("gives a typed error for any tensor dropped or reshaped, and never touches the GPU for one", async () => {
    const specs = tensorSpecs(small)
    const dir = await folder()
    await fc.assert(fc.asyncProperty(
      fc.nat({ max: specs.length - 1 }),
      fc.oneof(fc.constant("drop" as const), fc.constant("layer" as const), fc.tuple(fc.nat({ max: 2 }), fc.integer({ min: 0, max: 20 }))),
      async (which, change) => {
        const target = specs[which]!
        const layer = /^model\.layers\.\d+\./.exec(target.name)?.[0]
        const tensors = []
        for (const s of specs) {
          if (change === "drop" && s === target) continue
          if (change === "layer" && (layer === undefined ? s === target : s.name.startsWith(layer))) continue
          const shape = typeof change !== "string" && s === target ? reshape(s.shape, change) : s.shape
          tensors.push({ name: s.name, shape, data: new Float32Array(elementCount(shape)) })
        }
        await writeSafetensors(dir, tensors)
        const e = await outcome(dir)
        const same = typeof change !== "string" && reshape(target.shape, change).join() === target.shape.join()
        if (same) expect(e).toBeInstanceOf(GpuTouched)
        else expect(e instanceof ModelConfigError || e instanceof TensorShapeMismatch, String(e)).toBe(true)
      }
    ), { numRuns: 120 })
  })
})

/** `shape` with dimension `at` set to `size`, or (past its rank) a dimension appended. */
const reshape = (shape: ReadonlyArray<number>, [at, size]: readonly [number, number]): ReadonlyArray<number> =>
  at < shape.length ? shape.map((d, i) => (i === at ? size : d)) : [...shape, size]

describe("token ids", () => {
  it("refuses config.json ids outside the vocabulary, naming the field", async () => {
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
      [{ eos_token_id: 10 }, "eos_token_id: token id 10 is outside the vocabulary (vocab_size 10)"],
      [{ eos_token_id: [1, 12] }, "eos_token_id: token id 12 is outside the vocabulary (vocab_size 10)"],
      [{ bos_token_id: 4000 }, "bos_token_id: token id 4000 is outside the vocabulary (vocab_size 10)"]
    ]
    for (const [patch, message] of cases) {
      const dir = await folder()
      await patchConfig(dir, patch)
      const e = await failure(dir, ModelConfigError)
      expect(e.message).toBe(`config.json: ${message}`)
      expect(e.field).toBe(Object.keys(patch)[0])
    }
  })

  it("refuses tokenizer_config.json's special tokens when their ids are outside the model's vocabulary", async () => {
    const eight: ModelConfig = { ...small, vocabSize: 8 }
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
      [{ bos_token: "Ġa", eos_token: "</s>" }, "bos_token \"Ġa\" is token id 9, outside the model's vocabulary (vocab_size 8)"],
      [{ bos_token: "<s>", eos_token: { content: "Ġabc" } }, "eos_token \"Ġabc\" is token id 8, outside the model's vocabulary (vocab_size 8)"]
    ]
    for (const [tokenizerConfig, message] of cases) {
      const dir = await folder(eight)
      await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig))
      const e = await failure(dir, TokenizerError)
      expect(e.message).toBe(`${join(dir, "tokenizer_config.json")}: ${message}`)
      expect(e.field).toBe(Object.keys(tokenizerConfig)[message.startsWith("bos") ? 0 : 1])
    }
    const fine = await folder(eight)
    await writeFile(join(fine, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }))
    expect(await outcome(fine)).toBeInstanceOf(GpuTouched)
  })
})
