/**
 * Enqueueing a run: its record, problems and prefix first (a worker that
 * takes a job reads them), then one job per (problem, block of samples) on
 * the queue of the run's prefix group, problem by problem, so that blocks of
 * one problem sit next to each other and tend to share a worker's batch.
 */
import { randomBytes } from "node:crypto"
import { Effect } from "effect"
import { InvalidRunSpec, type QueueUnavailable } from "./errors.ts"
import { keys } from "./keys.ts"
import { QueueClient, type QueueConnection, redisCall } from "./QueueClient.ts"
import { readRun } from "./store.ts"
import {
  checkRunSpec, DEFAULT_ATTEMPTS, DEFAULT_POOL, groupOf, type GroupInfo, jobId, problemSeed, type RunRecord, type RunSpec, sampleBlocks,
  type StoredProblem
} from "./spec.ts"

/** Jobs and problems go to Redis in batches of this many: bounded commands, whatever the run's size. */
const BATCH = 1_000

/** A fresh run id: 10 hex digits, never a ":" or "." (job ids are built from it). */
export const newRunId = (): string => `r${randomBytes(5).toString("hex")}`

/** First try again after 1 s, then 2 s, 4 s: a GPU that was lost for a moment, a worker restarting. */
const BACKOFF = { type: "exponential", delay: 1_000 } as const

const runRecord = (id: string, spec: RunSpec, jobs: number): RunRecord => ({
  id,
  group: groupOf(spec.model, spec.kvDtype, spec.pool ?? DEFAULT_POOL, spec.prefix),
  createdAt: Date.now(),
  model: spec.model,
  kvDtype: spec.kvDtype,
  pool: spec.pool ?? DEFAULT_POOL,
  problems: spec.problems.length,
  samplesPerProblem: spec.samplesPerProblem,
  blockSize: spec.blockSize,
  jobs,
  prefixChars: spec.prefix.length,
  sampling: spec.sampling,
  attempts: spec.attempts ?? DEFAULT_ATTEMPTS,
  ...(spec.extra !== undefined ? { extra: spec.extra } : {})
})

const writeRun = async (connection: QueueConnection, record: RunRecord, spec: RunSpec): Promise<void> => {
  const { redis } = connection
  const group: GroupInfo = { model: record.model, kvDtype: record.kvDtype, pool: record.pool, prefixChars: record.prefixChars }
  const seed = spec.sampling.seed ?? 0
  for (let at = 0; at < spec.problems.length; at += BATCH) {
    const fields: Array<string> = []
    spec.problems.slice(at, at + BATCH).forEach((p, k) => {
      const stored: StoredProblem = { id: p.id, prompt: p.prompt, seed: problemSeed(seed, p.id) }
      fields.push(String(at + k), JSON.stringify(stored))
    })
    await redis.hset(keys.problems(record.id), ...fields)
  }
  await redis.multi()
    .set(keys.groupPrefix(record.group), spec.prefix)
    .hset(keys.groups, record.group, JSON.stringify(group))
    .hset(keys.run(record.id), "record", JSON.stringify(record))
    .zadd(keys.runs, record.createdAt, record.id)
    .exec()
}

const addJobs = async (connection: QueueConnection, record: RunRecord): Promise<void> => {
  const queue = connection.queue(record.group)
  const blocks = sampleBlocks(record.samplesPerProblem, record.blockSize)
  let batch: Array<Parameters<typeof queue.addBulk>[0][number]> = []
  const flush = async () => {
    if (batch.length > 0) await queue.addBulk(batch)
    batch = []
  }
  for (let problem = 0; problem < record.problems; problem++) {
    for (const [first, count] of blocks) {
      batch.push({
        name: "sample",
        data: { run: record.id, problem, first, count },
        opts: { jobId: jobId(record.id, problem, first), attempts: record.attempts, backoff: BACKOFF, removeOnComplete: true, removeOnFail: false }
      })
      if (batch.length >= BATCH) await flush()
    }
  }
  await flush()
}

/** The same spec again under its id: what an enqueue that is tried again finds. */
const sameRun = (a: RunRecord, b: RunRecord): boolean => JSON.stringify({ ...a, createdAt: 0 }) === JSON.stringify({ ...b, createdAt: 0 })

/**
 * Checks the spec (InvalidRunSpec naming the field), stores the run and adds
 * its jobs; returns its record. Enqueueing the same run under the same id
 * again (a retry after a lost connection) changes nothing and adds no job.
 */
export const enqueueRun = (spec: RunSpec, id: string = newRunId()): Effect.Effect<RunRecord, InvalidRunSpec | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    yield* Effect.try({ try: () => checkRunSpec(spec), catch: (e) => e as InvalidRunSpec })
    const connection = yield* QueueClient
    const fresh = runRecord(id, spec, spec.problems.length * sampleBlocks(spec.samplesPerProblem, spec.blockSize).length)
    const existing = yield* redisCall(connection, () => readRun(connection.redis, id))
    if (existing !== undefined && !sameRun(existing, fresh)) {
      return yield* new InvalidRunSpec({ field: "id", problem: `${id} is the id of another run on this queue` })
    }
    const record = existing ?? fresh
    yield* redisCall(connection, async () => {
      await writeRun(connection, record, spec)
      await addJobs(connection, record)
    })
    return record
  })
