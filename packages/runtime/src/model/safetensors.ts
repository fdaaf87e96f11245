/**
 * Safetensors files on disk (Node.js): opening one, a model folder's set
 * (one file or an index and its shards), and writing them. The format itself
 * is safetensorsFormat.ts.
 */
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { openRegularFile, readAt, readJsonFile, statIfPresent } from "./files.ts"
import {
  type ByteSource, encodeSafetensors, type FolderFiles, INDEX_FILE, openFolderTensors, readSafetensors, type SafetensorsFile, SINGLE_FILE,
  type TensorSource, type TensorToWrite
} from "./safetensorsFormat.ts"

export * from "./safetensorsFormat.ts"

/** The bytes of a regular file on disk (see openRegularFile). */
const openFileBytes = async (path: string): Promise<ByteSource> => {
  const { handle, size } = await openRegularFile(path)
  return { size, read: (position, length) => readAt(path, handle, length, position), close: () => handle.close() }
}

/** Opens a safetensors file (a regular file only; see openRegularFile) and validates its header. */
export const openSafetensors = async (path: string): Promise<SafetensorsFile> => readSafetensors(path, await openFileBytes(path))

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

/** The files of the folder `dir` on disk. */
const diskFolder = (dir: string): FolderFiles => ({
  pathOf: (name) => join(dir, name),
  has: async (name) => (await statIfPresent(join(dir, name))) !== undefined,
  open: (name) => openFileBytes(join(dir, name)),
  readJson: async (name, maxBytes) => (await readJsonFile(join(dir, name), maxBytes)).json
})

/** Opens model.safetensors.index.json's shards, or else model.safetensors, in `dir`. */
export const openTensorSource = (dir: string): Promise<TensorSource> => openFolderTensors(dir, diskFolder(dir))
