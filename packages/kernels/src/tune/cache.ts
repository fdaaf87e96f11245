/**
 * Where tuning choices are kept: one JSON file, `tune.json` in Canopy's cache
 * folder (CANOPY_CACHE_DIR, else $XDG_CACHE_HOME/canopy, else
 * ~/.cache/canopy), mapping a key to the candidate chosen and the timings it
 * was chosen by. A key names the adapter (vendor, architecture, device,
 * description, software or not), the Canopy version, the kernel and the
 * shape class, so a choice is reused only where it was measured.
 *
 * The file is written whole to a temporary file and renamed over the old one,
 * so a reader sees the old file or the new, never half of one; entries other
 * processes added meanwhile are read again and kept. A file that is not JSON,
 * or not this format, is ignored with a warning (and replaced on the next
 * write); a file that cannot be written leaves the choice to this process.
 *
 * Node's modules are fetched when a file cache is made (process.getBuiltinModule),
 * not imported: the kernels' barrel loads in a browser page too, which has no
 * file cache (defaultTuneCache gives none there).
 */
import type { GpuAdapterSummary } from "../gpu/adapters.ts"

/** What a kernel's choice depends on besides the adapter: head dim, element types, rounded dims, row regime. */
export type ShapeClass = Readonly<Record<string, string | number | boolean>>

export interface TuneKey {
  readonly adapter: GpuAdapterSummary
  /** the Canopy version (the kernels package's) */
  readonly version: string
  readonly kernel: string
  readonly shape: ShapeClass
}

export interface TuneRecord {
  /** the chosen candidate's name */
  readonly choice: string
  /** the median time of one run of each candidate measured (ms) */
  readonly medianMs: Readonly<Record<string, number>>
  /** when it was measured (ISO 8601) */
  readonly tunedAt: string
  /** candidates the time budget left untried: the next run measures them against the choice */
  readonly untried?: ReadonlyArray<string>
  /** candidates that did not build or gave wrong results: not built again for this key */
  readonly skipped?: ReadonlyArray<string>
}

export interface TuneCache {
  /** where the choices live, for messages */
  readonly location: string
  get(key: TuneKey): TuneRecord | undefined
  set(key: TuneKey, record: TuneRecord): void
}

/** The key as it is written in the file: JSON of its parts in a fixed order, the shape's fields sorted by name. */
export const tuneKeyText = (key: TuneKey): string => {
  const { vendor, architecture, device, description, software } = key.adapter
  const shape = Object.keys(key.shape).sort().map((name) => [name, key.shape[name]!])
  return JSON.stringify([vendor, architecture, device, description, software, key.version, key.kernel, shape])
}

/** Choices held for this process only: what a page or a test without a file uses. */
export const memoryTuneCache = (): TuneCache => {
  const entries = new Map<string, TuneRecord>()
  return {
    location: "memory",
    get: (key) => entries.get(tuneKeyText(key)),
    set: (key, record) => void entries.set(tuneKeyText(key), record)
  }
}

/** The file's format marker and its version: anything else is another program's file. */
const FORMAT = "canopy-tune-cache"
const FORMAT_VERSION = 1
export const TUNE_CACHE_FILE = "tune.json"

interface CacheFile {
  readonly format: typeof FORMAT
  readonly formatVersion: typeof FORMAT_VERSION
  readonly entries: Record<string, TuneRecord>
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

const isNameList = (x: unknown): boolean => x === undefined || (Array.isArray(x) && x.every((name) => typeof name === "string"))

const isTuneRecord = (x: unknown): x is TuneRecord =>
  isRecord(x) && typeof x["choice"] === "string" && typeof x["tunedAt"] === "string" && isRecord(x["medianMs"]) &&
  Object.values(x["medianMs"]).every((ms) => typeof ms === "number" && Number.isFinite(ms) && ms >= 0) &&
  isNameList(x["untried"]) && isNameList(x["skipped"])

/**
 * The entries of a cache file's text, or why none can be read from it. Entries
 * that do not have the record's fields are dropped, and counted.
 */
export const parseTuneCache = (text: string): { readonly entries: Map<string, TuneRecord>; readonly dropped: number } | { readonly problem: string } => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return { problem: `is not JSON (${e instanceof Error ? e.message : String(e)})` }
  }
  if (!isRecord(json) || json["format"] !== FORMAT || json["formatVersion"] !== FORMAT_VERSION || !isRecord(json["entries"])) {
    return { problem: `is not a Canopy tuning cache (format "${FORMAT}" version ${FORMAT_VERSION})` }
  }
  const entries = new Map<string, TuneRecord>()
  let dropped = 0
  for (const [key, record] of Object.entries(json["entries"])) {
    if (isTuneRecord(record)) entries.set(key, record)
    else dropped++
  }
  return { entries, dropped }
}

type Env = Readonly<Record<string, string | undefined>>

/** Canopy's cache folder: CANOPY_CACHE_DIR, else $XDG_CACHE_HOME/canopy (an absolute one), else ~/.cache/canopy. */
export const canopyCacheDir = (env: Env = process.env): string => {
  const { isAbsolute, join } = process.getBuiltinModule("node:path")
  const own = env["CANOPY_CACHE_DIR"]
  if (own !== undefined && own !== "") return own
  const xdg = env["XDG_CACHE_HOME"]
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(process.getBuiltinModule("node:os").homedir(), ".cache")
  return join(base, "canopy")
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export interface FileTuneCacheOptions {
  /** the folder (default canopyCacheDir()) */
  readonly dir?: string
  /** how problems with the file are told (default: console.warn) */
  readonly warn?: (text: string) => void
}

/** The cache in `tune.json` of the cache folder; the file is read when first asked. */
export const fileTuneCache = (options: FileTuneCacheOptions = {}): TuneCache => {
  const fs = process.getBuiltinModule("node:fs")
  const { join } = process.getBuiltinModule("node:path")
  const dir = options.dir ?? canopyCacheDir()
  const path = join(dir, TUNE_CACHE_FILE)
  const warn = options.warn ?? ((text: string) => console.warn(`canopy: ${text}`))

  /** The file's entries; a missing file is an empty cache, an unreadable one is told (when `tell`) and read as empty. */
  const readEntries = (tell: boolean): Map<string, TuneRecord> => {
    let text: string
    try {
      text = fs.readFileSync(path, "utf8")
    } catch (e) {
      const code = (e as { code?: string }).code
      // no file, or no folder to hold one: nothing saved yet
      if (code !== "ENOENT" && code !== "ENOTDIR" && tell) warn(`cannot read the tuning cache ${path}: ${errorText(e)}; tuning again`)
      return new Map()
    }
    const parsed = parseTuneCache(text)
    if ("problem" in parsed) {
      if (tell) warn(`the tuning cache ${path} ${parsed.problem}; ignoring it (it is replaced when a choice is next saved)`)
      return new Map()
    }
    if (parsed.dropped > 0 && tell) warn(`the tuning cache ${path} has ${parsed.dropped} malformed entr${parsed.dropped === 1 ? "y" : "ies"}; ignoring them`)
    return parsed.entries
  }

  let entries: Map<string, TuneRecord> | undefined
  return {
    location: path,
    get: (key) => (entries ??= readEntries(true)).get(tuneKeyText(key)),
    set: (key, record) => {
      const text = tuneKeyText(key)
      ;(entries ??= readEntries(true)).set(text, record)
      // entries other processes saved since this one read the file are kept
      const merged = readEntries(false)
      merged.set(text, record)
      const file: CacheFile = { format: FORMAT, formatVersion: FORMAT_VERSION, entries: Object.fromEntries(merged) }
      const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
      try {
        fs.mkdirSync(dir, { recursive: true })
        fs.writeFileSync(temp, `${JSON.stringify(file, null, 1)}\n`)
        fs.renameSync(temp, path)
      } catch (e) {
        try {
          fs.rmSync(temp, { force: true })
        } catch {
          // the folder itself is not there to hold it
        }
        warn(`cannot save the tuning cache ${path}: ${errorText(e)}; the choice holds for this process only`)
      }
    }
  }
}

/** Node's file cache, or none where there is no file system (a browser page: tuning is then skipped unless a cache is given). */
export const defaultTuneCache = (): TuneCache | undefined =>
  typeof process !== "undefined" && typeof process.getBuiltinModule === "function" ? fileTuneCache() : undefined

let version: string | undefined

/**
 * The version in the kernels package's package.json (the nearest one above
 * this module named @canopy/kernels: the same from src/ and from a build in
 * dist/); "unknown" where there is none to read (a page, a bundle).
 */
export const canopyVersion = (): string => {
  if (version !== undefined) return version
  version = "unknown"
  if (typeof process === "undefined" || typeof process.getBuiltinModule !== "function" || !import.meta.url.startsWith("file:")) return version
  const { readFileSync } = process.getBuiltinModule("node:fs")
  const { dirname, join } = process.getBuiltinModule("node:path")
  let at = dirname(process.getBuiltinModule("node:url").fileURLToPath(import.meta.url))
  for (let up = dirname(at); up !== at; at = up, up = dirname(at)) {
    try {
      const pkg = JSON.parse(readFileSync(join(at, "package.json"), "utf8")) as { name?: unknown; version?: unknown }
      if (pkg.name === "@canopy/kernels" && typeof pkg.version === "string") return (version = pkg.version)
    } catch {
      // no package.json here (or not one that parses): look further up
    }
  }
  return version
}
