/**
 * The run's data in Redis, read and written: its record, problems and
 * prefix; samples, written once each; what each job did; why a job failed.
 */
import type { Redis } from "ioredis"
import type { JobFailure } from "./errors.ts"
import { keys, sampleField } from "./keys.ts"
import type { RunRecord, StoredProblem } from "./spec.ts"

/** A sample as the queue holds it. */
export interface StoredSample {
  readonly text: string
  readonly tokens: number
  readonly finishReason: string
  readonly worker: string
}

/** What one attempt at a job did, as its worker reports it. */
export interface JobRecord {
  readonly job: string
  readonly worker: string
  /** what the worker's engine runs on: its adapter and model */
  readonly engine: string
  readonly problem: number
  readonly first: number
  readonly count: number
  /** attempts BullMQ had started, this one included */
  readonly attempt: number
  /** samples this attempt wrote */
  readonly written: number
  /** samples already written when it looked (by an earlier attempt): not drawn again */
  readonly found: number
  readonly promptTokens: number
  readonly prefillTokens: number
  readonly reusedTokens: number
  readonly generatedTokens: number
  readonly prefillSeconds: number
  readonly decodeSeconds: number
  readonly startedAt: number
  readonly finishedAt: number
}

export const readRun = async (redis: Redis, id: string): Promise<RunRecord | undefined> => {
  const text = await redis.hget(keys.run(id), "record")
  return text === null ? undefined : (JSON.parse(text) as RunRecord)
}

export const readProblem = async (redis: Redis, run: string, index: number): Promise<StoredProblem | undefined> => {
  const text = await redis.hget(keys.problems(run), String(index))
  return text === null ? undefined : (JSON.parse(text) as StoredProblem)
}

/** Problems [from, from + count) of the run, in order. */
export const readProblemRange = async (redis: Redis, run: string, from: number, count: number): Promise<Array<StoredProblem>> => {
  const values = await redis.hmget(keys.problems(run), ...Array.from({ length: count }, (_, k) => String(from + k)))
  return values.map((v, k) => {
    if (v === null) throw new Error(`run ${run} has no problem ${from + k} in Redis`)
    return JSON.parse(v) as StoredProblem
  })
}

export const readPrefix = async (redis: Redis, group: string): Promise<string> => (await redis.get(keys.groupPrefix(group))) ?? ""

/** Writes the sample unless it is there already; true when this call wrote it. */
export const writeSample = async (redis: Redis, run: RunRecord, problem: number, sample: number, stored: StoredSample): Promise<boolean> =>
  (await redis.canopyWriteSample(
    keys.samples(run.id), keys.progress(run.id), keys.runWorkers(run.id),
    sampleField(problem, sample), JSON.stringify(stored), problem, run.samplesPerProblem, stored.tokens, stored.worker
  )) === 1

/** The indices among [first, first + count) with no sample written yet. */
export const missingSamples = async (redis: Redis, run: string, problem: number, first: number, count: number): Promise<Array<number>> => {
  const pipeline = redis.pipeline()
  for (let s = first; s < first + count; s++) pipeline.hexists(keys.samples(run), sampleField(problem, s))
  const answers = (await pipeline.exec()) ?? []
  const missing: Array<number> = []
  answers.forEach(([error, exists], k) => {
    if (error !== null) throw error
    if (exists === 0) missing.push(first + k)
  })
  return missing
}

/** The samples of one problem by index (undefined where none is written). */
export const readProblemSamples = async (redis: Redis, run: RunRecord, problem: number): Promise<Array<StoredSample | undefined>> => {
  const fields = Array.from({ length: run.samplesPerProblem }, (_, s) => sampleField(problem, s))
  const values = await redis.hmget(keys.samples(run.id), ...fields)
  return values.map((v) => (v === null ? undefined : (JSON.parse(v) as StoredSample)))
}

export const recordJob = async (redis: Redis, run: string, record: JobRecord): Promise<void> => {
  const w = record.worker
  await redis.multi()
    .hset(keys.jobs(run), record.job, JSON.stringify(record))
    .hincrby(keys.runWorkers(run), `${w}|jobs`, 1)
    .hincrby(keys.runWorkers(run), `${w}|prompt`, record.promptTokens)
    .hincrby(keys.runWorkers(run), `${w}|prefill`, record.prefillTokens)
    .hincrby(keys.runWorkers(run), `${w}|reused`, record.reusedTokens)
    .exec()
}

export const readJobRecords = async (redis: Redis, run: string): Promise<Array<JobRecord>> =>
  Object.values(await redis.hgetall(keys.jobs(run))).map((v) => JSON.parse(v) as JobRecord)

export const recordFailure = async (redis: Redis, run: string, failure: JobFailure): Promise<void> => {
  await redis.hset(keys.failures(run), failure.job, JSON.stringify(failure))
}

export const readFailures = async (redis: Redis, run: string): Promise<Array<JobFailure>> =>
  Object.values(await redis.hgetall(keys.failures(run))).map((v) => JSON.parse(v) as JobFailure)
