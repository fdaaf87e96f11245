/**
 * One view of a run's progress over every worker: samples and problems done,
 * tokens, the jobs of its prefix group's queue, each worker's share and live
 * rate, and what failed.
 */
import type { Redis } from "ioredis"
import { Effect } from "effect"
import { type JobFailure, type QueueUnavailable, RunNotFound } from "./errors.ts"
import { keys } from "./keys.ts"
import { QueueClient, redisCall } from "./QueueClient.ts"
import type { StartFailure } from "./serve.ts"
import type { RunRecord } from "./spec.ts"
import { readFailures, readRun } from "./store.ts"
import type { WorkerStatus } from "./worker.ts"

/** A worker's part in one run, and its heartbeat when it is alive. */
export interface RunWorker {
  readonly id: string
  readonly samples: number
  readonly tokens: number
  readonly jobs: number
  readonly promptTokens: number
  readonly prefillTokens: number
  readonly reusedTokens: number
  readonly live?: WorkerStatus
}

export type RunState = "waiting" | "running" | "done" | "failed"

export interface RunProgress {
  readonly run: RunRecord
  readonly state: RunState
  readonly expected: number
  readonly samples: number
  readonly problemsDone: number
  readonly tokens: number
  /** jobs of the run's prefix group (other runs with the same prefix share the queue) */
  readonly queue: { readonly waiting: number; readonly active: number; readonly delayed: number }
  /** workers that wrote samples of the run, and live workers that could (same model, KV type and pool) */
  readonly workers: ReadonlyArray<RunWorker>
  readonly failures: ReadonlyArray<JobFailure>
  /** workers of the run's model that could not start, since the run was enqueued */
  readonly startFailures: ReadonlyArray<StartFailure>
}

/** Heartbeats of the workers seen lately (their status keys expire with their lease). */
export const readLiveWorkers = async (redis: Redis): Promise<Array<WorkerStatus>> => {
  const ids = await redis.zrangebyscore(keys.workers, Date.now() - 3_600_000, "+inf")
  if (ids.length === 0) return []
  const values = await redis.mget(...ids.map((id) => keys.worker(id)))
  return values.flatMap((v) => (v === null ? [] : [JSON.parse(v) as WorkerStatus]))
}

const number = (fields: Record<string, string>, name: string): number => Number(fields[name] ?? 0)

const runWorkers = (fields: Record<string, string>, live: ReadonlyArray<WorkerStatus>, run: RunRecord): Array<RunWorker> => {
  const ids = new Set(Object.keys(fields).map((f) => f.slice(0, f.lastIndexOf("|"))))
  for (const w of live) if (w.state !== "failed" && w.model === run.model && w.kvDtype === run.kvDtype && w.pool === run.pool) ids.add(w.id)
  return [...ids].sort().map((id) => {
    const status = live.find((w) => w.id === id)
    return {
      id,
      samples: number(fields, `${id}|samples`),
      tokens: number(fields, `${id}|tokens`),
      jobs: number(fields, `${id}|jobs`),
      promptTokens: number(fields, `${id}|prompt`),
      prefillTokens: number(fields, `${id}|prefill`),
      reusedTokens: number(fields, `${id}|reused`),
      ...(status !== undefined ? { live: status } : {})
    }
  })
}

const stateOf = (samples: number, expected: number, failures: number, started: boolean): RunState =>
  samples >= expected ? "done" : failures > 0 ? "failed" : started ? "running" : "waiting"

export const readProgress = async (redis: Redis, record: RunRecord, queueCounts: () => Promise<Record<string, number>>): Promise<RunProgress> => {
  const [progress, workerFields, failures, live, errors, counts] = await Promise.all([
    redis.hgetall(keys.progress(record.id)),
    redis.hgetall(keys.runWorkers(record.id)),
    readFailures(redis, record.id),
    readLiveWorkers(redis),
    redis.lrange(keys.errors, 0, -1),
    queueCounts()
  ])
  const expected = record.problems * record.samplesPerProblem
  const samples = number(progress, "samples")
  const startFailures = errors.map((e) => JSON.parse(e) as StartFailure)
    .filter((f) => f.at >= record.createdAt && f.model === record.model && f.kvDtype === record.kvDtype && f.pool === record.pool)
  return {
    run: record,
    state: stateOf(samples, expected, failures.length, samples > 0 || (counts["active"] ?? 0) > 0),
    expected,
    samples,
    problemsDone: number(progress, "problems"),
    tokens: number(progress, "tokens"),
    queue: { waiting: counts["waiting"] ?? 0, active: counts["active"] ?? 0, delayed: counts["delayed"] ?? 0 },
    workers: runWorkers(workerFields, live, record),
    failures,
    startFailures
  }
}

/** The run's record, or RunNotFound. */
export const findRun = (run: string): Effect.Effect<RunRecord, RunNotFound | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const record = yield* redisCall(connection, () => readRun(connection.redis, run))
    if (record === undefined) return yield* new RunNotFound({ run, url: connection.address.shown })
    return record
  })

export const runProgress = (run: string): Effect.Effect<RunProgress, RunNotFound | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const record = yield* findRun(run)
    return yield* redisCall(connection, () =>
      readProgress(connection.redis, record, () => connection.queue(record.group).getJobCounts("waiting", "active", "delayed")))
  })

/** The latest runs, newest first. */
export const listRuns = (limit: number): Effect.Effect<Array<RunRecord>, QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    return yield* redisCall(connection, async () => {
      const ids = await connection.redis.zrevrange(keys.runs, 0, limit - 1)
      const records = await Promise.all(ids.map((id) => readRun(connection.redis, id)))
      return records.filter((r): r is RunRecord => r !== undefined)
    })
  })
