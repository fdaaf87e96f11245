/**
 * A run and its jobs. A run is one shared prefix (the few-shot prompt), a
 * list of problems under it and n samples of each; it becomes one job per
 * (problem, block of samples). Every sample is keyed by (run, problem, sample
 * index), and its randomness by the problem's seed — derived from the run's
 * seed and the problem's id — and its index alone, so a job redone anywhere
 * draws the same samples, and so does a local run of the same problems.
 */
import { createHash } from "node:crypto"
import { basename, resolve } from "node:path"
import { type EngineOptions, MAX_REQUEST_SAMPLES, type SamplingOptions } from "@canopy/runtime"
import { InvalidRunSpec } from "./errors.ts"

export type KvDtype = NonNullable<EngineOptions["kvDtype"]>

export interface RunProblem {
  readonly id: string
  /** the problem's prompt, appended to the run's prefix */
  readonly prompt: string
}

/** A run as its submitter describes it. */
export interface RunSpec {
  /** the model's key (see modelKey): only workers with the same key serve the run */
  readonly model: string
  /** the KV element type the samples are drawn with: it changes them, so it routes jobs like the model */
  readonly kvDtype: KvDtype
  /** only workers of this pool serve the run (default "default") */
  readonly pool?: string
  /** the prompt every problem continues: the run's prefix group is (model, KV type, pool, prefix) */
  readonly prefix: string
  readonly problems: ReadonlyArray<RunProblem>
  readonly samplesPerProblem: number
  /** samples per job: a job is one problem's samples [first, first + blockSize) */
  readonly blockSize: number
  /** the sampling of every sample; `seed` is the run's, each problem's own is derived from it (problemSeed) */
  readonly sampling: Partial<SamplingOptions>
  /** tries a job gets when its error is one that trying again may cure (default 3) */
  readonly attempts?: number
  /** what the submitter needs to turn the samples into its outputs later, stored as given */
  readonly extra?: Readonly<Record<string, unknown>>
}

/** A run as Redis holds it (its problems and prefix are stored apart). */
export interface RunRecord {
  readonly id: string
  readonly group: string
  readonly createdAt: number
  readonly model: string
  readonly kvDtype: KvDtype
  readonly pool: string
  readonly problems: number
  readonly samplesPerProblem: number
  readonly blockSize: number
  readonly jobs: number
  readonly prefixChars: number
  readonly sampling: Partial<SamplingOptions>
  readonly attempts: number
  readonly extra?: Readonly<Record<string, unknown>>
}

/** A problem as a worker reads it: its prompt and its seed. */
export interface StoredProblem extends RunProblem {
  readonly seed: number
}

/** One job: samples [first, first + count) of one problem of one run. */
export interface JobData {
  readonly run: string
  readonly problem: number
  readonly first: number
  readonly count: number
}

/** A prefix group as Redis lists it. */
export interface GroupInfo {
  readonly model: string
  readonly kvDtype: KvDtype
  readonly pool: string
  readonly prefixChars: number
}

export const DEFAULT_POOL = "default"
export const DEFAULT_ATTEMPTS = 3

/** Most problems in one run, and most samples: bounds on what Redis is asked to hold (a sample is about a kilobyte). */
export const MAX_RUN_PROBLEMS = 1_000_000
export const MAX_RUN_SAMPLES = 10_000_000

/** A BullMQ job id: BullMQ refuses ":" in custom ids. Adding a job whose id exists adds nothing, so enqueueing twice is harmless. */
export const jobId = (run: string, problem: number, first: number): string => `${run}.${problem}.${first}`

/** A problem's samples cut into blocks of `blockSize`: [first, count] pairs. */
export const sampleBlocks = (samples: number, blockSize: number): Array<readonly [first: number, count: number]> => {
  const blocks: Array<readonly [number, number]> = []
  for (let first = 0; first < samples; first += blockSize) blocks.push([first, Math.min(blockSize, samples - first)])
  return blocks
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text).digest()

/**
 * A problem's seed: the first 32 bits of SHA-256 over the run's seed and the
 * problem's id. Independent of the problem's place in the run, so `--limit`
 * and a reordered problem file keep each problem's samples.
 */
export const problemSeed = (runSeed: number, problemId: string): number =>
  sha256(`canopy problem seed\0${runSeed}\0${problemId}`).readUInt32BE(0)

/** The prefix group: runs that share it share a queue, and the workers that hold its prefix in their KV cache. */
export const groupOf = (model: string, kvDtype: KvDtype, pool: string, prefix: string): string =>
  sha256(JSON.stringify([model, kvDtype, pool, prefix])).subarray(0, 8).toString("hex")

/**
 * The model as runs and workers name it: a synthetic preset by its spec, a
 * folder by its name, so that `/models/X` on one machine and `/data/X` on
 * another serve the same runs.
 */
export const modelKey = (spec: string): string => (spec.startsWith("synthetic:") ? spec : basename(resolve(spec)))

const fail = (field: string, problem: string): never => {
  throw new InvalidRunSpec({ field, problem })
}

const checkCount = (field: string, value: number, max: number): void => {
  if (!Number.isInteger(value) || value < 1 || value > max) fail(field, `must be an integer from 1 to ${max.toLocaleString("en-US")}, got ${value}`)
}

/** Throws InvalidRunSpec naming the first field that is wrong. */
export const checkRunSpec = (spec: RunSpec): void => {
  if (spec.model === "") fail("model", "must name a model")
  if (spec.kvDtype !== "f16" && spec.kvDtype !== "f32") fail("kvDtype", `must be "f16" or "f32", got ${JSON.stringify(spec.kvDtype)}`)
  if (spec.pool !== undefined && !/^[\w.-]{1,64}$/.test(spec.pool)) fail("pool", `must be 1 to 64 letters, digits, ".", "-" or "_", got ${JSON.stringify(spec.pool)}`)
  checkCount("problems.length", spec.problems.length, MAX_RUN_PROBLEMS)
  const seen = new Set<string>()
  spec.problems.forEach((p, i) => {
    if (typeof p.id !== "string" || p.id === "") fail(`problems[${i}].id`, "must be a non-empty string")
    if (seen.has(p.id)) fail(`problems[${i}].id`, `${JSON.stringify(p.id)} is another problem's id too: samples are keyed by it`)
    seen.add(p.id)
    if (typeof p.prompt !== "string") fail(`problems[${i}].prompt`, "must be a string")
  })
  checkCount("samplesPerProblem", spec.samplesPerProblem, MAX_REQUEST_SAMPLES)
  checkCount("blockSize", spec.blockSize, MAX_REQUEST_SAMPLES)
  if (spec.problems.length * spec.samplesPerProblem > MAX_RUN_SAMPLES) {
    fail("samplesPerProblem", `${spec.problems.length} problems × ${spec.samplesPerProblem} samples is more than the ${MAX_RUN_SAMPLES.toLocaleString("en-US")} one run may hold`)
  }
  const seed = spec.sampling.seed
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) fail("sampling.seed", `must be an integer from 0 to 2³²−1, got ${seed}`)
  if (spec.attempts !== undefined) checkCount("attempts", spec.attempts, 100)
}
