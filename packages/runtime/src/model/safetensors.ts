/**
 * Safetensors reading and writing.
 *
 * The format: 8 bytes little-endian header length N, N bytes of JSON
 * { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} },
 * then the data section, offsets relative to its start. The reader trusts
 * nothing: the header length must fit in the file and under a cap, the JSON
 * must parse, every dtype must be F32/F16/BF16, every shape's byte size must
 * equal its range, ranges must lie inside the data section and not overlap.
 * Any violation is a SafetensorsError or UnsupportedDtype, before a tensor
 * byte is read or a buffer sized from the header is allocated.
 */
import { writeFile } from "node:fs/promises"
import { basename, join } from "node:path"
import { decodeToF32, DTYPE_BYTES, DTYPES, encodeFromF32, type Dtype } from "./dtype.ts"
import { SafetensorsError, UnsupportedDtype } from "./errors.ts"
import { MAX_JSON_BYTES, openRegularFile, readAt, readJsonFile, statIfPresent } from "./files.ts"

/** Headers above this size are refused (real ones are a few hundred KB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024

export interface TensorInfo {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  /** byte range in the file (header included) */
  readonly begin: number
  readonly end: number
}

export interface SafetensorsHeader {
  readonly tensors: ReadonlyMap<string, TensorInfo>
  readonly metadata: Readonly<Record<string, string>>
}

const fail = (file: string, reason: string): never => {
  throw new SafetensorsError({ file, reason })
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

/** Reads the header length from the first 8 bytes; checks it against the file size and the cap. */
export const headerLength = (file: string, first8: Uint8Array, fileSize: number): number => {
  if (fileSize < 8 || first8.byteLength < 8) fail(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`)
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true)
  if (n > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte cap`)
  if (n > BigInt(fileSize - 8)) fail(file, `header length ${n} runs past the end of the ${fileSize}-byte file`)
  return Number(n)
}

/** Parses and validates the JSON header of a file of `fileSize` bytes whose header is `n` bytes. */
export const parseHeader = (file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader => {
  const dataStart = 8 + headerBytes.byteLength
  const dataSize = fileSize - dataStart
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes))
  } catch (e) {
    return fail(file, `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`)
  }
  if (!isObject(json)) return fail(file, "header is not a JSON object")
  const tensors = new Map<string, TensorInfo>()
  let metadata: Record<string, string> = {}
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
        fail(file, "__metadata__ must map strings to strings")
      }
      metadata = entry as Record<string, string>
      continue
    }
    if (!isObject(entry)) return fail(file, `tensor ${name}: entry is not an object`)
    const { dtype, shape, data_offsets: offsets } = entry
    if (typeof dtype !== "string") return fail(file, `tensor ${name}: dtype is missing`)
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      return fail(file, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`)
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      return fail(file, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`)
    }
    if (!(DTYPES as ReadonlyArray<string>).includes(dtype)) throw new UnsupportedDtype({ file, tensor: name, dtype })
    const [begin, end] = offsets as [number, number]
    if (begin > end || end > dataSize) {
      fail(file, `tensor ${name}: data_offsets [${begin}, ${end}] lie outside the ${dataSize}-byte data section`)
    }
    // The element count is bounded by the range before it can overflow: no absurd sizes get through.
    let elements = 1
    for (const d of shape as ReadonlyArray<number>) {
      elements *= d
      if (elements * DTYPE_BYTES[dtype as Dtype] > dataSize) {
        fail(file, `tensor ${name}: shape [${shape.join(", ")}] needs more bytes than the ${dataSize}-byte data section`)
      }
    }
    if (elements * DTYPE_BYTES[dtype as Dtype] !== end - begin) {
      fail(file, `tensor ${name}: shape [${shape.join(", ")}] of ${dtype} is ${elements * DTYPE_BYTES[dtype as Dtype]} bytes, but data_offsets span ${end - begin}`)
    }
    tensors.set(name, { name, dtype: dtype as Dtype, shape: shape as ReadonlyArray<number>, begin: dataStart + begin, end: dataStart + end })
  }
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin)
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) fail(file, `tensors ${sorted[i - 1]!.name} and ${sorted[i]!.name} overlap`)
  }
  return { tensors, metadata }
}

/** An open safetensors file: its validated header and a way to read tensors as f32. */
export interface SafetensorsFile {
  readonly path: string
  readonly header: SafetensorsHeader
  readF32(name: string): Promise<Float32Array>
  close(): Promise<void>
}

/** Opens a safetensors file (a regular file only; see openRegularFile) and validates its header. */
export const openSafetensors = async (path: string): Promise<SafetensorsFile> => {
  const { handle, size } = await openRegularFile(path)
  try {
    const first8 = await readAt(path, handle, Math.min(8, size), 0)
    const n = headerLength(path, first8, size)
    const headerBytes = await readAt(path, handle, n, 8)
    if (headerBytes.byteLength !== n) fail(path, `file shrank while reading its header`)
    const header = parseHeader(path, headerBytes, size)
    return {
      path,
      header,
      async readF32(name) {
        const info = header.tensors.get(name)
        if (info === undefined) return fail(path, `no tensor named ${name}`)
        const bytes = await readAt(path, handle, info.end - info.begin, info.begin)
        if (bytes.byteLength !== info.end - info.begin) fail(path, `tensor ${name}: file ends early`)
        return decodeToF32(info.dtype, bytes)
      },
      close: () => handle.close()
    }
  } catch (e) {
    await handle.close()
    throw e
  }
}

/** A tensor to write: f32 values stored as `dtype`. */
export interface TensorToWrite {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly data: ArrayLike<number>
  readonly dtype?: Dtype
}

/** The bytes of a safetensors file holding `tensors` (header padded to 8 bytes, as the reference writer does). */
export const encodeSafetensors = (tensors: ReadonlyArray<TensorToWrite>, metadata?: Record<string, string>): Uint8Array => {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {}
  const blobs: Array<Uint8Array> = []
  let offset = 0
  for (const t of tensors) {
    const dtype = t.dtype ?? "F32"
    const bytes = encodeFromF32(dtype, t.data)
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] }
    blobs.push(bytes)
    offset += bytes.byteLength
  }
  let json = JSON.stringify(header)
  json += " ".repeat((8 - (json.length % 8)) % 8)
  const headerBytes = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + headerBytes.byteLength + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true)
  out.set(headerBytes, 8)
  let at = 8 + headerBytes.byteLength
  for (const b of blobs) {
    out.set(b, at)
    at += b.byteLength
  }
  return out
}

export const INDEX_FILE = "model.safetensors.index.json"
export const SINGLE_FILE = "model.safetensors"

/**
 * Writes `tensors` into `dir` as model.safetensors, or, with shards > 1, as
 * model-0000i-of-0000n.safetensors files plus model.safetensors.index.json.
 */
export const writeSafetensors = async (dir: string, tensors: ReadonlyArray<TensorToWrite>, shards = 1): Promise<void> => {
  if (shards <= 1) {
    await writeFile(join(dir, SINGLE_FILE), encodeSafetensors(tensors, { format: "pt" }))
    return
  }
  const pad = (i: number): string => String(i).padStart(5, "0")
  const weightMap: Record<string, string> = {}
  let totalSize = 0
  for (let s = 0; s < shards; s++) {
    const part = tensors.filter((_, i) => i % shards === s)
    const name = `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`
    for (const t of part) weightMap[t.name] = name
    const bytes = encodeSafetensors(part, { format: "pt" })
    totalSize += bytes.byteLength
    await writeFile(join(dir, name), bytes)
  }
  await writeFile(join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2))
}

/** Every tensor of a model folder (one file or a sharded set), by name. */
export interface TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>
  readF32(name: string): Promise<Float32Array>
  close(): Promise<void>
}

/** Opens model.safetensors.index.json's shards, or else model.safetensors, in `dir`. */
export const openTensorSource = async (dir: string): Promise<TensorSource> => {
  const indexPath = join(dir, INDEX_FILE)
  // Any entry by the index's name means a sharded checkpoint: what it is gets checked on reading it.
  const sharded = (await statIfPresent(indexPath)) !== undefined
  const files: Array<SafetensorsFile> = []
  const owner = new Map<string, SafetensorsFile>()
  try {
    if (!sharded) {
      const file = await openSafetensors(join(dir, SINGLE_FILE))
      files.push(file)
      for (const name of file.header.tensors.keys()) owner.set(name, file)
    } else {
      const { json: index } = await readJsonFile(indexPath, MAX_JSON_BYTES)
      const map = isObject(index) ? index["weight_map"] : undefined
      if (!isObject(map)) return fail(indexPath, "weight_map is missing or not an object")
      const shardNames = new Set<string>()
      for (const [tensor, shard] of Object.entries(map)) {
        // Shard names come from the file: keep them inside the folder.
        if (typeof shard !== "string" || shard !== basename(shard) || shard.startsWith(".")) {
          fail(indexPath, `tensor ${tensor}: shard ${JSON.stringify(shard)} is not a file name in the model folder`)
        }
        shardNames.add(shard as string)
      }
      const byName = new Map<string, SafetensorsFile>()
      for (const shard of shardNames) {
        const file = await openSafetensors(join(dir, shard))
        files.push(file)
        byName.set(shard, file)
      }
      for (const [tensor, shard] of Object.entries(map)) {
        const file = byName.get(shard as string)!
        if (!file.header.tensors.has(tensor)) fail(indexPath, `tensor ${tensor} is not in its shard ${shard as string}`)
        owner.set(tensor, file)
      }
    }
  } catch (e) {
    await Promise.all(files.map((f) => f.close()))
    throw e
  }
  const tensors = new Map<string, TensorInfo>()
  for (const [name, file] of owner) tensors.set(name, file.header.tensors.get(name)!)
  return {
    tensors,
    readF32: (name) => {
      const file = owner.get(name)
      return file ? file.readF32(name) : fail(dir, `no tensor named ${name}`)
    },
    close: async () => {
      await Promise.all(files.map((f) => f.close()))
    }
  }
}
