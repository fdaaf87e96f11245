/**
 * A model folder held in memory (what a browser page's picker gives) against
 * the same folder on disk: the same config, tensors, tokenizer and GPU
 * weights, byte for byte; and the same faults refused, as typed errors
 * naming the file, before the GPU is touched.
 */
import { openGpu, readBuffer, type GpuHandle } from "@canopy/kernels"
import fc from "fast-check"
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { ModelConfig } from "../src/model/config.ts"
import type { Dtype } from "../src/model/dtype.ts"
import { ModelConfigError, ModelFileError, SafetensorsError } from "../src/model/errors.ts"
import { openModelFolder } from "../src/model/folder.ts"
import { loadModelFromFiles, MEMORY_FOLDER, type MemoryFile, type MemoryFolder, openMemoryFolder } from "../src/model/inMemory.ts"
import { loadModel } from "../src/model/model.ts"
import { saveModel } from "../src/model/synthetic.ts"
import { loadTokenizer } from "../src/model/tokenizerFile.ts"
import { synthesizeHostWeights, type ModelWeights } from "../src/model/weights.ts"
import { tinyBpe } from "./tinyBpe.ts"

const small: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, numKvHeads: 1,
  headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: "none" }, vocabSize: 10,
  tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 64, bosTokenId: 0, eosTokenIds: [1]
}

type Holder = "blob" | "arraybuffer" | "uint8array"

const hold = (bytes: Buffer, holder: Holder): MemoryFile => {
  const copy = new Uint8Array(bytes)
  return holder === "blob" ? new Blob([copy]) : holder === "arraybuffer" ? copy.buffer : copy
}

let root = ""
let count = 0
beforeAll(async () => void (root = await mkdtemp(join(tmpdir(), "canopy-in-memory-"))))
afterAll(() => rm(root, { recursive: true, force: true }))

const folderOnDisk = async (options: { readonly dtype: Dtype; readonly shards: number; readonly tokenizerConfig: boolean }): Promise<string> => {
  const dir = join(root, `m${count++}`)
  await saveModel(dir, small, synthesizeHostWeights(small, 3), options)
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tinyBpe))
  if (options.tokenizerConfig) await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }))
  return dir
}

/** Every file of `dir`, held as `holder`. */
const inMemory = async (dir: string, holder: Holder): Promise<Map<string, MemoryFile>> =>
  new Map(await Promise.all((await readdir(dir)).map(async (name) => [name, hold(await readFile(join(dir, name)), holder)] as const)))

const layouts = fc.record({
  dtype: fc.constantFrom<Dtype>("F32", "F16", "BF16"),
  shards: fc.integer({ min: 1, max: 3 }),
  tokenizerConfig: fc.boolean(),
  holder: fc.constantFrom<Holder>("blob", "arraybuffer", "uint8array")
})

describe("a folder held in memory", () => {
  it("reads as the same folder on disk: config, every tensor, the tokenizer", async () => {
    await fc.assert(fc.asyncProperty(layouts, fc.string({ maxLength: 12 }), async ({ holder, ...layout }, text) => {
      const dir = await folderOnDisk(layout)
      const disk = await openModelFolder(dir, { tokenizer: true })
      const { folder, tokenizer } = await openMemoryFolder(await inMemory(dir, holder))
      try {
        expect(folder.config).toEqual(disk.config)
        expect([...folder.source.tensors.values()]).toEqual([...disk.source.tensors.values()])
        for (const name of disk.source.tensors.keys()) expect(await folder.source.readF32(name)).toEqual(await disk.source.readF32(name))
        const fromDisk = await loadTokenizer(dir, { vocabSize: small.vocabSize })
        expect([tokenizer.bosId, tokenizer.eosIds, tokenizer.encode(text)]).toEqual([fromDisk.bosId, fromDisk.eosIds, fromDisk.encode(text)])
        const ids = tokenizer.encode(text, { addBos: false })
        expect([tokenizer.decode(ids), tokenizer.decode([])]).toEqual([fromDisk.decode(ids), ""])
      } finally {
        await Promise.all([disk.source.close(), folder.source.close()])
      }
    }), { numRuns: 12 })
  })

  it("names every file it lacks, and refuses a broken one by its name, before the GPU is touched", async () => {
    const untouchable = new Proxy({}, { get: (_t, key) => { throw new Error(`the GPU was touched (${String(key)})`) } }) as unknown as GPUDevice
    const refusal = (files: MemoryFolder): Promise<unknown> => loadModelFromFiles(untouchable, files).then(() => "loaded", (e: unknown) => e)
    const files = await inMemory(await folderOnDisk({ dtype: "F32", shards: 2, tokenizerConfig: false }), "blob")
    const without = (...names: Array<string>) => new Map([...files].filter(([name]) => !names.includes(name)))
    const missing = await refusal(without("config.json", "tokenizer.json", "model.safetensors.index.json"))
    expect(missing).toBeInstanceOf(ModelFileError)
    expect((missing as ModelFileError).message).toBe(
      `${MEMORY_FOLDER}: lack config.json, the weights (model.safetensors or model.safetensors.index.json), tokenizer.json`
    )
    const shard = [...files.keys()].find((n) => n.startsWith("model-00001"))!
    expect(String(await refusal(without(shard)))).toContain(`${shard}: is not among ${MEMORY_FOLDER}`)
    const truncated = new Map([...files, [shard, new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 123])]])
    const e = await refusal(truncated)
    expect(e).toBeInstanceOf(SafetensorsError)
    expect((e as SafetensorsError).file).toBe(shard)
    const outside = new Map([...files, ["model.safetensors.index.json", new Blob([JSON.stringify({ weight_map: { x: "../x.safetensors" } })])]])
    expect(String(await refusal(outside))).toContain(`shard "../x.safetensors" is not a file name in the model folder`)
    expect(String(await refusal(new Map([...files, ["config.json", new Blob(["{"])]])))).toContain("config.json: not valid JSON")
    const wrongSize = new Map([...files, ["config.json", new Blob([JSON.stringify({ ...JSON.parse(await (files.get("config.json") as Blob).text()), hidden_size: 32 })])]])
    expect(await refusal(wrongSize)).toBeInstanceOf(ModelConfigError)
  })
})

describe("loadModelFromFiles on the GPU", () => {
  let gpu: GpuHandle
  beforeAll(async () => void (gpu = await openGpu()))
  afterAll(() => gpu?.close())

  const buffersOf = (w: ModelWeights): Array<GPUBuffer> =>
    [w.embedding, w.finalNorm, w.lmHead, ...w.layers.flatMap((l) => [l.inputNorm, l.qkv, l.o, l.postNorm, l.gateUp, l.down])]

  it("uploads the weights a folder on disk uploads, byte for byte", async () => {
    for (const dtype of ["F32", "BF16"] as const) {
      const dir = await folderOnDisk({ dtype, shards: 2, tokenizerConfig: true })
      const fromDisk = await loadModel(gpu.device, { kind: "folder", dir })
      const fromMemory = await loadModelFromFiles(gpu.device, await inMemory(dir, "blob"))
      try {
        expect(fromMemory.weights.weightType).toBe(fromDisk.weights.weightType)
        const [a, b] = [buffersOf(fromDisk.weights), buffersOf(fromMemory.weights)]
        for (let i = 0; i < a.length; i++) {
          expect(new Uint8Array(await readBuffer(gpu.device, b[i]!))).toEqual(new Uint8Array(await readBuffer(gpu.device, a[i]!)))
        }
      } finally {
        fromDisk.weights.destroy()
        fromMemory.weights.destroy()
      }
    }
  })
})
