/**
 * A worker as an Effect: it serves until interrupted, then stops gracefully
 * (jobs in flight finish within the grace period, the rest return to
 * waiting); a lost engine ends it with WorkerEngineUnavailable. A worker
 * whose engine could not be set up records why (recordStartFailure), where
 * `canopy status` and a following `canopy sample` show it.
 */
import { hostname } from "node:os"
import { Effect } from "effect"
import { messageOf, type QueueUnavailable, tagOf, WorkerEngineUnavailable } from "./errors.ts"
import { keys } from "./keys.ts"
import { QueueClient, redisCall } from "./QueueClient.ts"
import { DEFAULT_POOL, type KvDtype } from "./spec.ts"
import { defaultWorkerId, QueueWorker, type WorkerOptions, type WorkerStatus, type WorkerSummary } from "./worker.ts"

export interface ServeOptions extends WorkerOptions {
  /** how long jobs in flight may take to finish once the worker is told to stop (default 30 s) */
  readonly graceMs?: number
}

export const DEFAULT_GRACE_MS = 30_000

export const serveQueue = (options: ServeOptions): Effect.Effect<WorkerSummary, WorkerEngineUnavailable | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const worker = yield* Effect.acquireRelease(
      redisCall(connection, () => QueueWorker.start(connection, options)),
      (w) => Effect.promise(() => w.stop(options.graceMs ?? DEFAULT_GRACE_MS))
    )
    yield* Effect.promise(() => worker.done)
    const fatal = worker.fatalError
    if (fatal !== undefined) return yield* new WorkerEngineUnavailable({ worker: worker.id, error: tagOf(fatal), problem: messageOf(fatal) })
    return worker.summary
  }).pipe(Effect.scoped)

/** A worker that could not start, as `canopy:errors` keeps it. */
export interface StartFailure {
  readonly worker: string
  readonly model: string
  readonly kvDtype: KvDtype
  readonly pool: string
  readonly error: string
  readonly message: string
  readonly at: number
}

/** The failures kept: enough to show what went wrong lately, bounded whatever restarts in a loop. */
const KEPT_FAILURES = 100

/** How long `canopy status` lists a worker that could not start. */
const FAILED_STATUS_MS = 3_600_000

/** Records that a worker could not set up its engine, where status and a following `canopy sample` show it. */
export const recordStartFailure = (
  identity: Pick<WorkerOptions, "id" | "model" | "kvDtype" | "pool">, error: unknown
): Effect.Effect<void, QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const id = identity.id ?? defaultWorkerId()
    const now = Date.now()
    const failure: StartFailure = {
      worker: id, model: identity.model, kvDtype: identity.kvDtype, pool: identity.pool ?? DEFAULT_POOL,
      error: tagOf(error), message: messageOf(error), at: now
    }
    const status: WorkerStatus = {
      id, host: hostname(), pid: process.pid, model: failure.model, kvDtype: failure.kvDtype, pool: failure.pool, state: "failed",
      concurrency: 0, inFlight: 0, jobs: 0, samples: 0, tokens: 0, tokensPerSecond: 0, held: [], startedAt: now, heartbeatAt: now,
      error: `${failure.error}: ${failure.message}`
    }
    yield* redisCall(connection, () =>
      connection.redis.multi()
        .lpush(keys.errors, JSON.stringify(failure))
        .ltrim(keys.errors, 0, KEPT_FAILURES - 1)
        .set(keys.worker(id), JSON.stringify(status), "PX", FAILED_STATUS_MS)
        .zadd(keys.workers, now, id)
        .exec()
    )
  })
