/**
 * A finished run's samples, problem by problem in the run's order, each
 * problem's by sample index: exactly one per (problem, sample), or a typed
 * error saying why not (RunFailed when jobs failed for good, RunIncomplete
 * while jobs are still to run).
 */
import { Effect } from "effect"
import { type QueueUnavailable, RunFailed, RunIncomplete, type RunNotFound } from "./errors.ts"
import { keys } from "./keys.ts"
import { findRun } from "./progress.ts"
import { QueueClient, redisCall } from "./QueueClient.ts"
import type { RunRecord, StoredProblem } from "./spec.ts"
import {
  type JobRecord, readFailures, readJobRecords, readPrefix, readProblemRange, readProblemSamples, type StoredSample
} from "./store.ts"

export interface CollectedProblem {
  readonly problem: StoredProblem
  /** by sample index */
  readonly samples: ReadonlyArray<StoredSample>
}

export interface CollectedRun {
  readonly run: RunRecord
  /** the prompt every problem continues */
  readonly prefix: string
  readonly problems: ReadonlyArray<CollectedProblem>
  /** the last completed attempt of each job */
  readonly jobs: ReadonlyArray<JobRecord>
}

/** Problems read per round trip. */
const BATCH = 256

export const collectRun = (run: string): Effect.Effect<CollectedRun, RunNotFound | RunFailed | RunIncomplete | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const { redis } = connection
    const record = yield* findRun(run)
    const expected = record.problems * record.samplesPerProblem
    const written = Number((yield* redisCall(connection, () => redis.hget(keys.progress(run), "samples"))) ?? 0)
    if (written < expected) {
      const failures = yield* redisCall(connection, () => readFailures(redis, run))
      return yield* (failures.length > 0 ? new RunFailed({ run, failures }) : new RunIncomplete({ run, samples: written, expected }))
    }
    const problems: Array<CollectedProblem> = []
    for (let from = 0; from < record.problems; from += BATCH) {
      const batch = yield* redisCall(connection, () => readProblemRange(redis, run, from, Math.min(BATCH, record.problems - from)))
      for (const [k, problem] of batch.entries()) {
        const samples = yield* redisCall(connection, () => readProblemSamples(redis, record, from + k))
        // the counter says every sample is there: a hole here is a bug, not a run still going
        const hole = samples.findIndex((s) => s === undefined)
        if (hole >= 0) return yield* Effect.die(new Error(`run ${run}: problem ${problem.id} has no sample ${hole} although all ${expected} are counted`))
        problems.push({ problem, samples: samples as Array<StoredSample> })
      }
    }
    const prefix = yield* redisCall(connection, () => readPrefix(redis, record.group))
    return { run: record, prefix, problems, jobs: yield* redisCall(connection, () => readJobRecords(redis, run)) }
  })
