/**
 * Opening the files of a model folder. Only regular files are read: opening a
 * FIFO for reading blocks until a writer appears (forever, for a hostile
 * folder), and a socket, device or directory holds no model. Each path is
 * stat-ed first (following links, so a Hugging Face cache's links to blobs
 * work); anything else is a ModelFileError naming the path and what it is.
 */
import { constants, type Stats } from "node:fs"
import { type FileHandle, open, stat } from "node:fs/promises"
import { ModelFileError } from "./errors.ts"

export { MAX_CONFIG_BYTES, MAX_JSON_BYTES } from "./fileLimits.ts"

/** What is at a path, as the error messages say it. */
export const kindOf = (s: Stats): string =>
  s.isFile() ? "a regular file"
  : s.isDirectory() ? "a directory"
  : s.isFIFO() ? "a FIFO"
  : s.isSocket() ? "a socket"
  : s.isCharacterDevice() ? "a character device"
  : s.isBlockDevice() ? "a block device"
  : "not a regular file"

const codeOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

const fileError = (file: string, e: unknown): ModelFileError =>
  e instanceof ModelFileError ? e
  : new ModelFileError({ file, reason: codeOf(e) === "ENOENT" ? "does not exist" : e instanceof Error ? e.message : String(e) })

/** The stats of `path`, or undefined when nothing is there (a dangling link included). */
export const statIfPresent = (path: string): Promise<Stats | undefined> =>
  stat(path).catch((e: unknown) => {
    if (codeOf(e) === "ENOENT") return undefined
    throw fileError(path, e)
  })

export const requireRegularFile = (path: string, s: Stats): void => {
  if (!s.isFile()) throw new ModelFileError({ file: path, reason: `is ${kindOf(s)}, not a regular file` })
}

/** An open regular file and its size. */
export interface RegularFile {
  readonly handle: FileHandle
  readonly size: number
}

// Were the path swapped for a FIFO between the stat and the open, O_NONBLOCK
// keeps open() from waiting for a writer, and the fstat after it refuses it.
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)

export const openRegularFile = async (path: string): Promise<RegularFile> => {
  requireRegularFile(path, await stat(path).catch((e: unknown) => Promise.reject(fileError(path, e))))
  const handle = await open(path, READ_FLAGS).catch((e: unknown) => Promise.reject(fileError(path, e)))
  try {
    const s = await handle.stat()
    requireRegularFile(path, s)
    return { handle, size: s.size }
  } catch (e) {
    await handle.close()
    throw fileError(path, e)
  }
}

/** Reads `length` bytes at `position`, however many calls that takes; fewer only at the end of the file. */
export const readAt = async (path: string, handle: FileHandle, length: number, position: number): Promise<Uint8Array> => {
  const bytes = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await handle.read(bytes, done, length - done, position + done)
      .catch((e: unknown) => Promise.reject(fileError(path, e)))
    if (bytesRead === 0) return bytes.subarray(0, done)
    done += bytesRead
  }
  return bytes
}

/** The text of a regular file of at most `maxBytes`. */
export const readTextFile = async (path: string, maxBytes: number): Promise<string> => {
  const { handle, size } = await openRegularFile(path)
  try {
    if (size > maxBytes) throw new ModelFileError({ file: path, reason: `is ${size} bytes, above the ${maxBytes}-byte limit for this file` })
    return new TextDecoder().decode(await readAt(path, handle, size, 0))
  } finally {
    await handle.close()
  }
}

/** A regular JSON file: its text (for quoting values as written) and its value. */
export const readJsonFile = async (path: string, maxBytes: number): Promise<{ readonly text: string; readonly json: unknown }> => {
  const text = await readTextFile(path, maxBytes)
  try {
    return { text, json: JSON.parse(text) }
  } catch (e) {
    throw new ModelFileError({ file: path, reason: `not valid JSON (${e instanceof Error ? e.message : String(e)})` })
  }
}
