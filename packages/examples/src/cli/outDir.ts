/**
 * The output folder, checked before a run starts: created, and shown to take
 * a file, so that a bad `--out` fails in a moment instead of after the model
 * has loaded and the samples are done.
 */
import { mkdir, rm, stat, writeFile } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"
import { Effect } from "effect"
import { causeText, OutputDirError } from "./errors.ts"

/** Not there, or under a file (ENOTDIR): either way, the walk goes on up to say which. */
const isMissing = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "code" in e && (e.code === "ENOENT" || e.code === "ENOTDIR")

/**
 * Creates `path` one level at a time from its nearest existing ancestor.
 * Node's recursive mkdir loops forever where a folder exists but refuses
 * children (`/proc/x`: mkdir says ENOENT, the parent is there, so it retries);
 * one level at a time, that refusal is an answer.
 */
const createFolder = async (path: string): Promise<void> => {
  const missing: Array<string> = []
  for (let at = resolve(path); ; at = dirname(at)) {
    let isFolder: boolean
    try {
      isFolder = (await stat(at)).isDirectory()
    } catch (e) {
      if (!isMissing(e)) throw new Error(`cannot look at ${at}: ${causeText(e)}`)
      if (dirname(at) === at) throw new Error(`the root ${at} does not exist`)
      missing.push(at)
      continue
    }
    if (!isFolder) throw new Error(`${at} is a file, not a folder`)
    break
  }
  for (const at of missing.reverse()) {
    try {
      await mkdir(at)
    } catch (e) {
      throw new Error(`cannot create the folder ${at}: ${causeText(e)}`)
    }
  }
}

/** A probe file written and removed: a folder can exist and still refuse files (read-only, no permission, full). */
const probeWrite = async (path: string): Promise<void> => {
  const probe = join(path, `.canopy-write-check-${process.pid}`)
  try {
    await writeFile(probe, "")
  } catch (e) {
    throw new Error(`cannot write a file in it: ${causeText(e)}`)
  }
  await rm(probe, { force: true })
}

/** Makes `path` a folder the run can write to, or fails with OutputDirError saying why not. */
export const prepareOutDir = (path: string): Effect.Effect<string, OutputDirError> =>
  Effect.tryPromise({
    try: async () => {
      await createFolder(path)
      await probeWrite(path)
      return path
    },
    catch: (e) => new OutputDirError({ path, problem: causeText(e) })
  })
