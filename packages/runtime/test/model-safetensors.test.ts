import fc from "fast-check"
import { execFileSync } from "node:child_process"
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { decodeToF32, type Dtype, encodeFromF32, f16ToF32, f32ToF16 } from "../src/model/dtype.ts"
import { ModelConfigError, ModelFileError, SafetensorsError, TensorShapeMismatch, UnsupportedDtype } from "../src/model/errors.ts"
import { encodeSafetensors, openSafetensors, openTensorSource, writeSafetensors } from "../src/model/safetensors.ts"
import { PRESETS, saveModel } from "../src/model/synthetic.ts"
import { tensorSpecs } from "../src/model/tensors.ts"
import { loadHostWeights } from "../src/model/folderWeights.ts"
import { synthesizeHostWeights } from "../src/model/weights.ts"

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "canopy-st-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

let fileNo = 0
const fileOf = async (bytes: Uint8Array): Promise<string> => {
  const path = join(dir, `f${fileNo++}.safetensors`)
  await writeFile(path, bytes)
  return path
}

/** A file whose header is `header` (as JSON) followed by `dataBytes` zero bytes. */
const rawFile = (header: unknown, dataBytes: number, lengthField?: bigint): Uint8Array => {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header))
  const out = new Uint8Array(8 + json.byteLength + dataBytes)
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.byteLength), true)
  out.set(json, 8)
  return out
}

const failure = async (bytes: Uint8Array): Promise<unknown> => {
  const path = await fileOf(bytes)
  return openSafetensors(path).then(async (f) => (await f.close(), undefined), (e: unknown) => e)
}

const roundTrip = (dtype: Dtype, values: ArrayLike<number>): Float32Array => decodeToF32(dtype, encodeFromF32(dtype, values))

describe("dtype conversion", () => {
  it("f16 round trip is exact on every f16 value and rounds f32 to nearest", () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16ToF32(h)
      if (Number.isNaN(v)) expect(Number.isNaN(f16ToF32(f32ToF16(v)))).toBe(true)
      else expect(f32ToF16(v), `0x${h.toString(16)}`).toBe(h)
    }
    fc.assert(fc.property(fc.float({ min: -60000, max: 60000, noNaN: true }), (x) => {
      const y = roundTrip("F16", [x])[0]!
      const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -14))) - 10)
      expect(Math.abs(y - x)).toBeLessThanOrEqual(ulp / 2)
    }))
  })

  it("bf16 keeps the top 16 bits, rounding to nearest", () => {
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) }), (x) => {
      const y = roundTrip("BF16", [x])[0]!
      expect(Math.abs(y - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8 + 1e-38)
    }))
    expect(Array.from(roundTrip("BF16", [1, -2.5, 0, 3.140625]))).toEqual([1, -2.5, 0, 3.140625])
  })
})

describe("safetensors files", () => {
  const tensors = [
    { name: "a", shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i * 0.37 - 2) },
    { name: "b", shape: [5], data: Float32Array.from([1, -1, 0.5, 1e-3, 65504]) },
    { name: "empty", shape: [0, 7], data: new Float32Array(0) }
  ]

  for (const dtype of ["F32", "F16", "BF16"] as const) {
    for (const shards of [1, 2]) {
      it(`writes and reads ${dtype} in ${shards} file(s)`, async () => {
        const folder = join(dir, `${dtype}-${shards}`)
        await mkdir(folder)
        await writeSafetensors(folder, tensors.map((t) => ({ ...t, dtype })), shards)
        const source = await openTensorSource(folder)
        for (const t of tensors) {
          expect(source.tensors.get(t.name)?.shape).toEqual(t.shape)
          expect(source.tensors.get(t.name)?.dtype).toBe(dtype)
          expect(Array.from(await source.readF32(t.name))).toEqual(Array.from(roundTrip(dtype, t.data)))
        }
        await source.close()
      })
    }
  }

  it("loads a saved model to the same numbers and checks shapes against config.json", async () => {
    const c = PRESETS.tiny
    const host = synthesizeHostWeights(c, 3)
    const folder = join(dir, "tiny-f32")
    await saveModel(folder, c, host)
    const loaded = await loadHostWeights(folder)
    for (const [name, values] of host) expect(loaded.weights.get(name)).toEqual(values)
    const wrong = join(dir, "tiny-wrong")
    await saveModel(wrong, { ...c, intermediateSize: 96 }, synthesizeHostWeights({ ...c, intermediateSize: 96 }, 3))
    // Weights of a model with intermediate 96 under the tiny config (intermediate 128).
    await copyFile(join(folder, "config.json"), join(wrong, "config.json"))
    const error = await loadHostWeights(wrong).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ModelConfigError)
    expect(error).toMatchObject({ field: "intermediate_size", tensors: "model.layers.0.mlp.gate_proj.weight is [96, 64]" })
    expect(String((error as ModelConfigError).message))
      .toBe("config.json: intermediate_size: 128 does not match the tensors; tensors: model.layers.0.mlp.gate_proj.weight is [96, 64]")
    // one layer's tensor off while layer 0 agrees: the tensor is named
    const bent = join(dir, "tiny-bent")
    await saveModel(bent, c, host)
    await writeSafetensors(bent, tensorSpecs(c).map((s) => s.name === "model.layers.1.mlp.up_proj.weight"
      ? { name: s.name, shape: [96, 64], data: host.get(s.name)!.subarray(0, 96 * 64) }
      : { name: s.name, shape: s.shape, data: host.get(s.name)! }))
    const shape = await loadHostWeights(bent).catch((e: unknown) => e)
    expect(shape).toBeInstanceOf(TensorShapeMismatch)
    expect(shape).toMatchObject({ tensor: "model.layers.1.mlp.up_proj.weight", expected: [128, 64], actual: [96, 64] })
  })

  it("rejects a truncated file", async () => {
    const good = encodeSafetensors(tensors)
    for (const cut of [0, 5, 8, 20, good.byteLength - 1]) {
      expect(await failure(good.subarray(0, cut)), `cut at ${cut}`).toBeInstanceOf(SafetensorsError)
    }
  })

  it("rejects a header length beyond the file or above the cap", async () => {
    const header = { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }
    expect(String(await failure(rawFile(header, 4, 1000n)))).toContain("past the end")
    expect(String(await failure(rawFile(header, 4, 2n ** 63n)))).toContain("cap")
  })

  it("rejects invalid JSON, overlapping ranges, wrong sizes and absurd shapes", async () => {
    const cases: ReadonlyArray<readonly [unknown, number, string]> = [
      ["{not json", 0, "JSON"],
      [[1, 2], 0, "object"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, 12, "overlap"],
      [{ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 16, "span"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, 4, "outside"],
      [{ a: { dtype: "F32", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8, "more bytes"],
      [{ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4, "shape"],
      [{ a: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, 4, "outside"],
      [{ a: { dtype: "F32", shape: [1], data_offsets: [0] } }, 4, "data_offsets"],
      [{ __metadata__: { x: 1 } }, 0, "__metadata__"]
    ]
    for (const [header, data, text] of cases) {
      const error = await failure(rawFile(header, data))
      expect(error, JSON.stringify(header)).toBeInstanceOf(SafetensorsError)
      expect(String(error)).toContain(text)
    }
  })

  it("names the tensor and dtype of an unsupported dtype", async () => {
    const error = await failure(rawFile({ w: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, 8))
    expect(error).toBeInstanceOf(UnsupportedDtype)
    expect(error).toMatchObject({ tensor: "w", dtype: "I64" })
  })

  it("rejects index files whose shards escape the folder or lack their tensors", async () => {
    const folder = join(dir, "bad-index")
    await mkdir(folder)
    await writeFile(join(folder, "model-1.safetensors"), encodeSafetensors(tensors))
    const write = (map: unknown) => writeFile(join(folder, "model.safetensors.index.json"), JSON.stringify({ weight_map: map }))
    await write({ a: "../../etc/passwd" })
    expect(String(await openTensorSource(folder).catch((e: unknown) => e))).toContain("not a file name")
    await write({ zzz: "model-1.safetensors" })
    expect(String(await openTensorSource(folder).catch((e: unknown) => e))).toContain("not in its shard")
    await write({ a: "model-1.safetensors" })
    const source = await openTensorSource(folder)
    expect([...source.tensors.keys()]).toEqual(["a"])
    await source.close()
  })

  it.skipIf(process.platform === "win32")("opens only regular files, naming what else is there", async () => {
    const fifo = join(dir, "pipe.safetensors")
    execFileSync("mkfifo", [fifo])
    const e = await openSafetensors(fifo).catch((e: unknown) => e)
    expect(e).toBeInstanceOf(ModelFileError)
    expect(String((e as Error).message)).toBe(`${fifo}: is a FIFO, not a regular file`)
    const folder = join(dir, "dir.safetensors")
    await mkdir(folder)
    expect(String(await openSafetensors(folder).catch((e: unknown) => (e as Error).message))).toBe(`${folder}: is a directory, not a regular file`)
    const absent = join(dir, "absent.safetensors")
    expect(String(await openSafetensors(absent).catch((e: unknown) => (e as Error).message))).toBe(`${absent}: does not exist`)
    // a folder whose model.safetensors is a FIFO, opened directly
    const pipeFolder = join(dir, "pipe-folder")
    await mkdir(pipeFolder)
    execFileSync("mkfifo", [join(pipeFolder, "model.safetensors")])
    expect(String(await openTensorSource(pipeFolder).catch((e: unknown) => (e as Error).message)))
      .toBe(`${join(pipeFolder, "model.safetensors")}: is a FIFO, not a regular file`)
  })

  it("never crashes on random bytes after a valid length prefix", async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 80 }), async (bytes, n) => {
      const out = new Uint8Array(8 + bytes.byteLength)
      new DataView(out.buffer).setBigUint64(0, BigInt(n), true)
      out.set(bytes, 8)
      const result = await failure(out)
      if (result !== undefined) expect(result instanceof SafetensorsError || result instanceof UnsupportedDtype).toBe(true)
    }), { numRuns: 100, seed: 3 })
  })
})
