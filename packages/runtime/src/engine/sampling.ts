/**
 * Sampling settings: checked field by field (a request's, or a prompt-tree
 * node's overrides), resolved per sample group, and the seed each group's
 * random streams are keyed by.
 */
import { InvalidSampling } from "./errors.ts"
import { DEFAULT_SAMPLING, type SamplingOptions } from "./request.ts"

const SAMPLING_KEYS: ReadonlyArray<keyof SamplingOptions> = Object.keys(DEFAULT_SAMPLING) as Array<keyof SamplingOptions>

const shown = (x: unknown): string => (typeof x === "number" && !Number.isFinite(x) ? String(x) : JSON.stringify(x) ?? String(x))

/** Throws InvalidSampling naming `at + field` unless `value` is a valid value of that field. `vocab` bounds stop token ids when known. */
const checkField = (field: keyof SamplingOptions, value: unknown, at: string, vocab: number | undefined): void => {
  const bad = (problem: string): never => {
    throw new InvalidSampling({ field: `${at}${field}`, problem })
  }
  const num = typeof value === "number" ? value : NaN
  switch (field) {
    case "temperature":
      if (!Number.isFinite(num) || num < 0) bad(`must be a number ≥ 0, got ${shown(value)}`)
      break
    case "topK":
      if (!Number.isInteger(num) || num < 0) bad(`must be an integer ≥ 0, got ${shown(value)}`)
      break
    case "topP":
      if (!Number.isFinite(num) || num <= 0 || num > 1) bad(`must be in (0, 1], got ${shown(value)}`)
      break
    case "seed":
      if (!Number.isInteger(num) || num < 0 || num > 0xffffffff) bad(`must be an integer from 0 to 2³²−1, got ${shown(value)}`)
      break
    case "maxTokens":
      if (!Number.isInteger(num) || num < 1) bad(`must be an integer ≥ 1, got ${shown(value)}`)
      break
    case "ignoreEos":
      if (typeof value !== "boolean") bad(`must be true or false, got ${shown(value)}`)
      break
    case "stop":
      if (!Array.isArray(value) || value.some((x) => typeof x !== "string")) bad(`must be an array of strings, got ${shown(value)}`)
      if ((value as Array<string>).some((x) => x.length === 0)) bad("stop strings must not be empty")
      break
    case "stopTokenIds": {
      if (!Array.isArray(value)) bad(`must be an array of token ids, got ${shown(value)}`)
      for (const t of value as Array<unknown>) {
        const ok = typeof t === "number" && Number.isInteger(t) && t >= 0 && (vocab === undefined ? t <= 0xffffffff : t < vocab)
        if (!ok) bad(`${shown(t)} is not a token id (0..${vocab === undefined ? "the vocabulary's last" : vocab - 1})`)
      }
      break
    }
  }
}

/**
 * Checks sampling overrides as they come from JSON or code: only known keys,
 * each of the right type and range. `at` prefixes the field in errors (a
 * node's `$.children[0].sampling.`).
 */
export const checkSamplingOverrides = (input: unknown, at: string, vocab?: number): Partial<SamplingOptions> => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new InvalidSampling({ field: at.replace(/\.$/, "") || "sampling", problem: `must be an object, got ${shown(input)}` })
  }
  for (const [k, v] of Object.entries(input)) {
    if (!(SAMPLING_KEYS as ReadonlyArray<string>).includes(k)) {
      throw new InvalidSampling({ field: `${at}${k}`, problem: `unknown setting; the settings are ${SAMPLING_KEYS.join(", ")}` })
    }
    if (v !== undefined) checkField(k as keyof SamplingOptions, v, at, vocab)
  }
  return input as Partial<SamplingOptions>
}

/** The defaults with `given` on top, every field checked. */
export const resolveSampling = (given: Partial<SamplingOptions>, vocab: number, at = ""): SamplingOptions => {
  checkSamplingOverrides(given, at, vocab)
  return { ...DEFAULT_SAMPLING, ...definedOnly(given) }
}

/** The fields that are set: spreading an explicit `undefined` over a default would erase it. */
export const definedOnly = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>

/**
 * The seed a group's random streams are keyed by. A node that sets its own
 * seed keeps it as given, so the same (seed, sample index) draws the same
 * sample whichever request it comes in (a job redone elsewhere, a local run).
 * Otherwise the request's seed is mixed with the group's index, so groups
 * that share a seed do not draw the same random numbers.
 */
export const groupSeed = (requestSeed: number, ownSeed: number | undefined, groupIndex: number): number => {
  if (ownSeed !== undefined) return ownSeed
  if (groupIndex === 0) return requestSeed
  let h = (requestSeed ^ Math.imul(groupIndex, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}
