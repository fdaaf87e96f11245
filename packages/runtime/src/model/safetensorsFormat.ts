/**
 * The safetensors format, wherever the bytes are held (on disk, see
 * safetensors.ts; in memory, see inMemory.ts). Platform-neutral.
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
import { decodeToF32, DTYPE_BYTES, DTYPES, encodeFromF32, type Dtype } from "./dtype.ts"
import { SafetensorsError, UnsupportedDtype } from "./errors.ts"
import { MAX_JSON_BYTES } from "./fileLimits.ts"

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

/** Reading a tensor's data: its bytes as stored (a range of them, for reading in chunks), or decoded to f32. */
export interface TensorReader {
  /** `length` bytes from byte `offset` of the tensor's data (default: all of it), little-endian as stored */
  readBytes(name: string, offset?: number, length?: number): Promise<Uint8Array>
  readF32(name: string): Promise<Float32Array>
}

/** An open safetensors file: its validated header and a way to read its tensors. */
export interface SafetensorsFile extends TensorReader {
  readonly path: string
  readonly header: SafetensorsHeader
  close(): Promise<void>
}

/** The bytes of one file, wherever they are held. */
export interface ByteSource {
  readonly size: number
  /** `length` bytes at `position`; fewer only at the end of the file */
  read(position: number, length: number): Promise<Uint8Array>
  close(): Promise<void>
}

/** Validates the header of the safetensors file `path` held by `bytes`; closes `bytes` when it is refused. */
export const readSafetensors = async (path: string, bytes: ByteSource): Promise<SafetensorsFile> => {
  try {
    const first8 = await bytes.read(0, Math.min(8, bytes.size))
    const n = headerLength(path, first8, bytes.size)
    const headerBytes = await bytes.read(8, n)
    if (headerBytes.byteLength !== n) fail(path, `file shrank while reading its header`)
    const header = parseHeader(path, headerBytes, bytes.size)
    const readBytes = async (name: string, offset = 0, length?: number): Promise<Uint8Array> => {
      const info = header.tensors.get(name)
      if (info === undefined) return fail(path, `no tensor named ${name}`)
      const stored = info.end - info.begin
      const n = length ?? stored - offset
      if (offset < 0 || n < 0 || offset + n > stored) fail(path, `tensor ${name}: bytes [${offset}, ${offset + n}) lie outside its ${stored} bytes`)
      const data = await bytes.read(info.begin + offset, n)
      if (data.byteLength !== n) fail(path, `tensor ${name}: file ends early`)
      return data
    }
    return {
      path,
      header,
      readBytes,
      readF32: async (name) => {
        const data = await readBytes(name)
        return decodeToF32(header.tensors.get(name)!.dtype, data)
      },
      close: () => bytes.close()
    }
  } catch (e) {
    await bytes.close()
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

/** Every tensor of a model folder (one file or a sharded set), by name. */
export interface TensorSource extends TensorReader {
  readonly tensors: ReadonlyMap<string, TensorInfo>
  close(): Promise<void>
}

/** The files of one model folder, by name, wherever they are held. */
export interface FolderFiles {
  /** the file's name as messages show it (its path, for a folder on disk) */
  pathOf(name: string): string
  has(name: string): Promise<boolean>
  open(name: string): Promise<ByteSource>
  readJson(name: string, maxBytes: number): Promise<unknown>
}

/** The shard of each tensor, from an index's weight_map; shard names must be file names in the folder. */
const shardMap = (indexPath: string, index: unknown): Map<string, string> => {
  const map = isObject(index) ? index["weight_map"] : undefined
  if (!isObject(map)) return fail(indexPath, "weight_map is missing or not an object")
  const shards = new Map<string, string>()
  for (const [tensor, shard] of Object.entries(map)) {
    // Shard names come from the file: keep them inside the folder.
    if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\") || shard.startsWith(".")) {
      fail(indexPath, `tensor ${tensor}: shard ${JSON.stringify(shard)} is not a file name in the model folder`)
    }
    shards.set(tensor, shard as string)
  }
  return shards
}

/** Opens model.safetensors.index.json's shards, or else model.safetensors, of `folder` (named `dir` in messages). */
export const openFolderTensors = async (dir: string, folder: FolderFiles): Promise<TensorSource> => {
  const indexPath = folder.pathOf(INDEX_FILE)
  // Any entry by the index's name means a sharded checkpoint: what it is gets checked on reading it.
  const sharded = await folder.has(INDEX_FILE)
  const files: Array<SafetensorsFile> = []
  const owner = new Map<string, SafetensorsFile>()
  try {
    if (!sharded) {
      const file = await readSafetensors(folder.pathOf(SINGLE_FILE), await folder.open(SINGLE_FILE))
      files.push(file)
      for (const name of file.header.tensors.keys()) owner.set(name, file)
    } else {
      const shards = shardMap(indexPath, await folder.readJson(INDEX_FILE, MAX_JSON_BYTES))
      const byName = new Map<string, SafetensorsFile>()
      for (const shard of new Set(shards.values())) {
        const file = await readSafetensors(folder.pathOf(shard), await folder.open(shard))
        files.push(file)
        byName.set(shard, file)
      }
      for (const [tensor, shard] of shards) {
        const file = byName.get(shard)!
        if (!file.header.tensors.has(tensor)) fail(indexPath, `tensor ${tensor} is not in its shard ${shard}`)
        owner.set(tensor, file)
      }
    }
  } catch (e) {
    await Promise.all(files.map((f) => f.close()))
    throw e
  }
  const tensors = new Map<string, TensorInfo>()
  for (const [name, file] of owner) tensors.set(name, file.header.tensors.get(name)!)
  const fileOf = (name: string): SafetensorsFile => owner.get(name) ?? fail(dir, `no tensor named ${name}`)
  return {
    tensors,
    readBytes: async (name, offset, length) => fileOf(name).readBytes(name, offset, length),
    readF32: async (name) => fileOf(name).readF32(name),
    close: async () => {
      await Promise.all(files.map((f) => f.close()))
    }
  }
}
