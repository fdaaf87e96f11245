/**
 * Weights kept as stored: f16 and bf16 checkpoints load at half the GPU
 * memory of f32, their bytes copied from the file unchanged, and decode like
 * an f32 load of the same values; synthetic models of each dtype hold what a
 * checkpoint of that dtype would.
 */
import { type GpuHandle, openGpu, packWeights, readBuffer, roundWeights, uploadBuffer, type WeightType } from "@canopy/kernels"
import fc from "fast-check"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TreeEngine } from "../src/engine/Engine.ts"
import type { GenerateResult, PromptTree } from "../src/engine/index.ts"
import { BufferStream } from "../src/model/bufferStream.ts"
import type { ModelConfig } from "../src/model/config.ts"
import { dtypeOfWeightType, type Dtype } from "../src/model/dtype.ts"
import { type LoadedModel, loadModel } from "../src/model/model.ts"
import { referenceLogits } from "../src/model/reference.ts"
import { writeSafetensors } from "../src/model/safetensors.ts"
import { saveModel } from "../src/model/synthetic.ts"
import { byteTokenizer } from "../src/model/tokenizer.ts"
import { elementCount, isMatrix, layerPrefix, tensorSpecs } from "../src/model/tensors.ts"
import { loadWeights } from "../src/model/folderWeights.ts"
import { type HostWeights, type ModelWeights, synthesizeHostWeights, synthesizeWeights } from "../src/model/weights.ts"
import { tinyBpe } from "./tinyBpe.ts"
import { relError } from "./smallModel.ts"

let gpu: GpuHandle
let root: string
let count = 0
beforeAll(async () => {
  gpu = await openGpu()
  root = await mkdtemp(join(tmpdir(), "canopy-weights-"))
})
afterAll(async () => {
  gpu?.close()
  await rm(root, { recursive: true, force: true })
})

/** Every buffer a multiple of 16 bytes in f32 and in 16 bits, so the memory figures are exact. */
const even: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: "none" }, vocabSize: 10,
  tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 256, bosTokenId: undefined, eosTokenIds: []
}

/** Odd sizes: in 16 bits the embedding ends mid-word and up starts mid-word in gateUp (gate has 9·7 values). */
const odd: ModelConfig = { ...even, hiddenSize: 9, intermediateSize: 7, vocabSize: 11, attentionBias: true, architecture: "Qwen2ForCausalLM" }

/** A model folder holding `host` as `dtype` (or each tensor as `dtypeOf` says), with the tokenizer. */
const folder = async (c: ModelConfig, host: HostWeights, dtypeOf: Dtype | ((name: string) => Dtype)): Promise<string> => {
  const dir = join(root, `m${count++}`)
  if (typeof dtypeOf === "string") {
    await saveModel(dir, c, host, { dtype: dtypeOf })
  } else {
    await saveModel(dir, c, host)
    await writeSafetensors(dir, tensorSpecs(c).map((s) => ({ name: s.name, shape: s.shape, data: host.get(s.name)!, dtype: dtypeOf(s.name) })))
  }
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tinyBpe))
  return dir
}

/** Each weight buffer with the tensors it holds, end to end. */
const buffersOf = (w: ModelWeights): ReadonlyArray<readonly [GPUBuffer, ReadonlyArray<string>]> => {
  const c = w.config
  const out: Array<readonly [GPUBuffer, ReadonlyArray<string>]> = [[w.embedding, ["model.embed_tokens.weight"]]]
  w.layers.forEach((l, i) => {
    const p = layerPrefix(i)
    out.push(
      [l.inputNorm, [`${p}input_layernorm.weight`]],
      [l.qkv, ["q_proj", "k_proj", "v_proj"].map((name) => `${p}self_attn.${name}.weight`)],
      [l.o, [`${p}self_attn.o_proj.weight`]], [l.postNorm, [`${p}post_attention_layernorm.weight`]],
      [l.gateUp, [`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`]], [l.down, [`${p}mlp.down_proj.weight`]]
    )
    if (l.qkvBias !== undefined) out.push([l.qkvBias, ["q_proj", "k_proj", "v_proj"].map((name) => `${p}self_attn.${name}.bias`)])
  })
  out.push([w.finalNorm, ["model.norm.weight"]])
  if (!c.tieWordEmbeddings) out.push([w.lmHead, ["lm_head.weight"]])
  return out
}

const isNormOrBias = (name: string): boolean => /(norm|bias)/.test(name)

/** The bytes each buffer must hold: the host values as `type` (norms and biases f32), packed by the CPU. */
const expectHolds = async (w: ModelWeights, host: HostWeights, type: WeightType): Promise<void> => {
  for (const [buffer, names] of buffersOf(w)) {
    const values = names.flatMap((n) => Array.from(host.get(n)!))
    const want = new Uint8Array(packWeights(isNormOrBias(names[0]!) ? "f32" : type, values).buffer)
    const got = new Uint8Array(await readBuffer(gpu.device, buffer, want.byteLength))
    expect(got, names.join(" + ")).toEqual(want)
  }
}

const matrixElements = (c: ModelConfig): number => tensorSpecs(c).filter(isMatrix).reduce((n, s) => n + elementCount(s.shape), 0)
const otherElements = (c: ModelConfig): number => tensorSpecs(c).filter((s) => !isMatrix(s)).reduce((n, s) => n + elementCount(s.shape), 0)

const TREE: PromptTree = { tokens: [2, 3, 4, 5], children: [{ tokens: [6], samples: 2 }, { tokens: [7, 8, 9], samples: 1 }] }

/** Greedy completions of TREE and the logits of every decode step by (path, sample, position). */
const decode = async (model: LoadedModel): Promise<{ result: GenerateResult; logits: Map<string, Float32Array> }> => {
  // the tree is token ids and only ids are compared: the byte tokenizer stands in for the folder's for the completions' text
  const engine = await TreeEngine.create(gpu.device, { ...model, tokenizer: byteTokenizer(model.config.vocabSize) }, {
    blockSize: 4, kvBlocks: 64, maxBatch: 8, kvDtype: "f32"
  })
  const logits = new Map<string, Float32Array>()
  const vocab = model.config.vocabSize
  try {
    const result = await engine.generate({ tree: TREE, sampling: { temperature: 0, maxTokens: 5 } }, {
      onLogits: ({ rows, logits: all }) => rows.forEach((r, i) =>
        logits.set(`${r.path.join(".")}#${r.sample}@${r.position}`, all.slice(i * vocab, (i + 1) * vocab)))
    })
    return { result, logits }
  } finally {
    engine.destroy()
  }
}

describe("a 16-bit checkpoint stays 16-bit on the GPU", () => {
  it.each(["f16", "bf16"] as const)("%s: half the matrix memory of the f32 load, the file's bytes, the f32 load's tokens and logits", async (type) => {
    const host = synthesizeHostWeights(even, 3, type)
    const half = await loadModel(gpu.device, { kind: "folder", dir: await folder(even, host, dtypeOfWeightType(type)) })
    const full = await loadModel(gpu.device, { kind: "folder", dir: await folder(even, host, "F32") })
    try {
      expect(half.weights.weightType).toBe(type)
      expect(full.weights.weightType).toBe("f32")
      // norms stay f32; every matrix takes 2 bytes a value instead of 4
      expect(full.weights.bytes).toBe(4 * (matrixElements(even) + otherElements(even)))
      expect(half.weights.bytes).toBe(2 * matrixElements(even) + 4 * otherElements(even))
      await expectHolds(half.weights, host, type)
      const [a, b] = [await decode(half), await decode(full)]
      expect(a.result.completions.map((c) => c.tokens)).toEqual(b.result.completions.map((c) => c.tokens))
      expect([...a.logits.keys()]).toEqual([...b.logits.keys()])
      expect(a.logits.size).toBeGreaterThan(0)
      for (const [key, got] of a.logits) expect(relError(got, b.logits.get(key)!), key).toBeLessThan(1e-4)
      // and both agree with the float64 reference on the same values at every decode step
      for (const c of a.result.completions) {
        const path = c.path.length === 1 ? TREE.children![c.path[0]!]! : TREE
        const sequence = [...TREE.tokens!, ...(path.tokens ?? []), ...c.tokens]
        const want = referenceLogits(even, host, sequence)
        for (const [key, got] of a.logits) {
          const [where, position] = key.split("@")
          if (where === `${c.path.join(".")}#${c.sample}`) expect(relError(got, want[Number(position)]!), key).toBeLessThan(1e-4)
        }
      }
    } finally {
      half.weights.destroy()
      full.weights.destroy()
    }
  })

  it.each(["f16", "bf16"] as const)("%s of odd sizes, read in chunks of any multiple of 4 bytes, lands word-exact", async (type) => {
    const host = synthesizeHostWeights(odd, 8, type)
    const dir = await folder(odd, host, dtypeOfWeightType(type))
    for (const chunk of [4, 8, 12, 36, undefined]) {
      const weights = await loadWeights(gpu.device, dir, undefined, chunk)
      try {
        expect(weights.weightType).toBe(type)
        await expectHolds(weights, host, type)
      } finally {
        weights.destroy()
      }
    }
    await expect(loadWeights(gpu.device, dir, undefined, 6)).rejects.toThrow(/multiple of 4/)
  })

  it("matrices of one 16-bit dtype with f32 norms stay 16-bit; matrices that mix dtypes are widened to f32", async () => {
    const host = synthesizeHostWeights(even, 4, "bf16")
    const f32Norms = await loadWeights(gpu.device, await folder(even, host, (n) => (isNormOrBias(n) ? "F32" : "BF16")))
    expect(f32Norms.weightType).toBe("bf16")
    await expectHolds(f32Norms, host, "bf16")
    f32Norms.destroy()
    const mixed = await loadWeights(gpu.device, await folder(even, host, (n) => (n.includes("down_proj") ? "F16" : "BF16")))
    expect(mixed.weightType).toBe("f32")
    // bf16 values the f16 down_proj cannot hold exactly are rounded once more, on disk
    const stored = new Map([...host].map(([n, v]) => [n, n.includes("down_proj") ? roundWeights("f16", v) : v]))
    await expectHolds(mixed, stored, "f32")
    mixed.destroy()
  })
})

describe("synthetic weights of a dtype", () => {
  it.each(["f32", "f16", "bf16"] as const)("%s: what a checkpoint of that dtype holds, made on the GPU, bit for bit", async (type) => {
    for (const c of [even, odd]) {
      const host = synthesizeHostWeights(c, 11, type)
      const made = await synthesizeWeights(gpu.device, c, 11, type)
      const loaded = await loadWeights(gpu.device, await folder(c, host, dtypeOfWeightType(type)))
      try {
        expect(made.weightType).toBe(type)
        expect(made.bytes).toBe(loaded.bytes)
        await expectHolds(made, host, type)
        await expectHolds(loaded, host, type)
      } finally {
        made.destroy()
        loaded.destroy()
      }
    }
  })
})

describe("BufferStream", () => {
  it("writes pieces of any length end to end from a word offset, the last word padded with zeros", async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 23 }), { maxLength: 8 }), fc.constantFrom(0, 8),
      async (pieces, start) => {
        const total = pieces.reduce((n, p) => n + p.byteLength, 0)
        const words = Math.ceil(total / 4)
        const buffer = uploadBuffer(gpu.device, "stream", Uint32Array.from({ length: start / 4 + words + 1 }, () => 0xa5a5a5a5))
        const stream = new BufferStream(gpu.device, buffer, start)
        for (const p of pieces) stream.push(p)
        stream.end()
        const got = new Uint8Array(await readBuffer(gpu.device, buffer, start + 4 * words + 4))
        const want = new Uint8Array(start + 4 * words + 4).fill(0xa5)
        want.fill(0, start, start + 4 * words)
        let at = start
        for (const p of pieces) {
          want.set(p, at)
          at += p.byteLength
        }
        expect(got).toEqual(want)
        buffer.destroy()
      }), { numRuns: 40, seed: 5 })
    const target = gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST })
    expect(() => new BufferStream(gpu.device, target, 2)).toThrow(RangeError)
    target.destroy()
  })
})
