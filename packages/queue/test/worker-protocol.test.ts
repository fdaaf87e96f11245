/**
 * The worker loop on a real redis-server, with workers in this process and
 * a stand-in engine whose sample i of a prompt is a function of the prompt,
 * the node's seed and i (as the real engine's is): every sample is drawn
 * exactly once and is the sample a single local request would draw; no
 * worker has more jobs in flight than its concurrency; a graceful stop past
 * its grace returns the unfinished jobs, which finish elsewhere without
 * drawing again what was written; an error that trying again cannot cure
 * fails the job at once, one it can is tried again; and two prefix groups
 * go to one worker each. The real engine on real worker processes, killed
 * and with Redis restarted under them, is distributed.test.ts.
 */
import type { GenerateEvents, GenerateRequest, GenerateResult } from "@canopy/runtime"
import fc from "fast-check"
import { Data, Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  collectRun, enqueueRun, openConnection, problemSeed, QueueClient, type QueueConnection, QueueWorker, readJobRecords, readProgress,
  type RunRecord, type RunSpec, type SampleEngine, type WorkerTiming
} from "../src/index.ts"
import { eventually, scaled } from "./limits.ts"
import { type RedisServer, startRedis } from "./redis.ts"

const TIMING: Partial<WorkerTiming> = { tickMs: 50, leaseMs: 1_000, lockMs: 2_000, stalledCheckMs: 500 }

let redis: RedisServer
let connection: QueueConnection
const workers: Array<QueueWorker> = []

beforeAll(async () => {
  redis = await startRedis({ lifetimeSeconds: Math.ceil(scaled(900_000) / 1000) })
  connection = await openConnection(redis.url)
})
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop(0)))
  await connection?.close()
  await redis?.stop()
})

const textOf = (prompt: string, seed: number, sample: number) => `${prompt}|${seed}|${sample}`

class ContextTooLong extends Data.TaggedError("ContextTooLong")<{ readonly message: string }> {}
class GpuValidationError extends Data.TaggedError("GpuValidationError")<{ readonly message: string }> {}

interface StandIn extends SampleEngine {
  readonly calls: Array<GenerateRequest>
  maxInFlight: number
}

/** Draws each asked-for sample after `delayMs`; `fail` may throw for a call instead (it sees the call's number). */
const standIn = (delayMs: number, fail?: (call: number, request: GenerateRequest) => Error | undefined): StandIn => {
  let inFlight = 0
  const engine: StandIn = {
    calls: [],
    maxInFlight: 0,
    generate: async (request: GenerateRequest, events: GenerateEvents, signal: AbortSignal): Promise<GenerateResult> => {
      const call = engine.calls.push(request) - 1
      engine.maxInFlight = Math.max(engine.maxInFlight, ++inFlight)
      try {
        const failure = fail?.(call, request)
        if (failure !== undefined) throw failure
        const completions = []
        for (const [k, child] of (request.tree.children ?? []).entries()) {
          for (let j = 0; j < (child.samples ?? 0); j++) {
            await new Promise((resolve) => setTimeout(resolve, delayMs))
            signal.throwIfAborted()
            const sample = (child.firstSample ?? 0) + j
            const c = { path: [k], sample, tokens: [1, 2, 3], text: textOf(child.text!, child.sampling!.seed!, sample), finishReason: "length" as const }
            events.onCompletion?.(c)
            completions.push(c)
          }
        }
        const stats = { promptTokens: 10, prefillTokens: 4, reusedTokens: 6, generatedTokens: 3 * completions.length, prefillSeconds: 0, decodeSeconds: 0 }
        return { completions, stats: stats as GenerateResult["stats"] }
      } finally {
        inFlight--
      }
    }
  }
  return engine
}

let runs = 0
/** Each test's runs and workers are in a pool of their own: workers left from another test take none of its jobs. */
const specOf = (pool: string, problems: number, samples: number, blockSize: number, prefix = "FEW"): RunSpec => ({
  model: "synthetic:standin",
  kvDtype: "f16",
  pool,
  prefix,
  problems: Array.from({ length: problems }, (_, i) => ({ id: `q${i}`, prompt: `problem ${i}` })),
  samplesPerProblem: samples,
  blockSize,
  sampling: { seed: 11 },
  attempts: 3
})

const enqueue = (spec: RunSpec) =>
  Effect.runPromise(enqueueRun(spec, `rproto${String(runs++).padStart(6, "0")}`).pipe(Effect.provide(QueueClient.layer(redis.url))))

const collect = (run: string) => Effect.runPromise(collectRun(run).pipe(Effect.provide(QueueClient.layer(redis.url))))

const startWorker = async (pool: string, id: string, engine: SampleEngine, concurrency: number) => {
  const worker = await QueueWorker.start(connection, { id, model: "synthetic:standin", kvDtype: "f16", pool, concurrency, engine, timing: TIMING })
  workers.push(worker)
  return worker
}

const progressOf = (record: RunRecord) =>
  readProgress(connection.redis, record, () => connection.queue(record.group).getJobCounts("waiting", "active", "delayed"))

const finished = (record: RunRecord, ms = 30_000) => eventually(async () => (await progressOf(record)).state === "done", ms)

/** Every sample of the run, as one local request of the whole tree would draw it. */
const expectLocalSamples = async (record: RunRecord, spec: RunSpec) => {
  const collected = await collect(record.id)
  expect(collected.problems.map(({ problem, samples }) => [problem.id, samples.map((s) => s.text)])).toEqual(
    spec.problems.map((p) => [p.id, Array.from({ length: spec.samplesPerProblem }, (_, s) => textOf(p.prompt, problemSeed(11, p.id), s))])
  )
  return collected
}

describe("workers on one queue", () => {
  it("draw every sample of random runs exactly once, with no more jobs in flight than their concurrency", async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }),
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
      async (problems, samples, block, concurrencies) => {
        const pool = `random-${runs}`
        const spec = specOf(pool, problems, samples, block)
        const engines = concurrencies.map(() => standIn(2))
        const mine = await Promise.all(concurrencies.map((c, i) => startWorker(pool, `w${runs}-${i}`, engines[i]!, c)))
        const record = await enqueue(spec)
        expect(await finished(record)).toBe(true)
        await Promise.all(mine.map((w) => w.stop(5_000)))
        await expectLocalSamples(record, spec)
        engines.forEach((e, i) => expect(e.maxInFlight).toBeLessThanOrEqual(concurrencies[i]!))
        const summaries = mine.map((w) => w.summary)
        expect(summaries.reduce((n, s) => n + s.samples, 0)).toBe(problems * samples)
        expect(summaries.reduce((n, s) => n + s.jobs, 0)).toBe(record.jobs)
        expect(summaries.reduce((n, s) => n + s.failed, 0)).toBe(0)
      }
    ), { numRuns: 6 })
  })

  it("return the jobs still running when stopped past their grace, and the next worker draws only what is missing", async () => {
    const spec = specOf("stop", 2, 6, 6)
    const slow = standIn(150)
    const first = await startWorker("stop", "slow", slow, 2)
    const record = await enqueue(spec)
    expect(await eventually(async () => (await progressOf(record)).samples >= 2, 10_000, 20)).toBe(true)
    await first.stop(0)
    const returned = (await connection.queue(record.group).getJobs(["waiting"])).filter((j) => j.data.run === record.id)
    expect(returned.length).toBeGreaterThan(0)
    for (const job of returned) expect(job.attemptsMade).toBe(0)
    const before = (await progressOf(record)).samples
    await startWorker("stop", "fast", standIn(1), 2)
    expect(await finished(record)).toBe(true)
    const collected = await expectLocalSamples(record, spec)
    const bySlow = collected.problems.flatMap((p) => p.samples).filter((s) => s.worker === "slow").length
    expect(bySlow).toBe(before)
    const jobs = await readJobRecords(connection.redis, record.id)
    const byFast = jobs.filter((j) => j.worker === "fast")
    expect(before + byFast.reduce((n, j) => n + j.written, 0)).toBe(12)
    for (const j of byFast) expect(j.found + j.written).toBe(j.count)
  })

  it("fail a job at once on an error that trying again cannot cure, and try again on one it may", async () => {
    const record = await enqueue(specOf("errors", 1, 2, 1))
    const engine = standIn(1, (call, request) =>
      request.tree.children![0]!.firstSample === 0
        ? new ContextTooLong({ message: "the prompt is longer than the model's context" })
        : call < 2 ? new GpuValidationError({ message: "a passing fault" }) : undefined)
    await startWorker("errors", "picky", engine, 1)
    expect(await eventually(async () => (await progressOf(record)).samples === 1 && (await progressOf(record)).failures.length === 1, 20_000)).toBe(true)
    const progress = await progressOf(record)
    expect(progress.state).toBe("failed")
    expect(progress.failures).toEqual([
      { job: `${record.id}.0.0`, worker: "picky", error: "ContextTooLong", message: "the prompt is longer than the model's context", attempts: 1 }
    ])
    const jobs = await readJobRecords(connection.redis, record.id)
    expect(jobs.map((j) => [j.job, j.attempt])).toEqual([[`${record.id}.0.1`, 2]])
    const exit = await Effect.runPromiseExit(collectRun(record.id).pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(JSON.stringify(exit)).toContain("ContextTooLong")
  })

  it("send two prefix groups to one worker each when each group's jobs fill a worker's batch", async () => {
    const a = standIn(20)
    const b = standIn(20)
    await startWorker("affinity", "aff-a", a, 4)
    await startWorker("affinity", "aff-b", b, 4)
    const one = await enqueue(specOf("affinity", 2, 4, 2, "prefix one"))
    const two = await enqueue(specOf("affinity", 2, 4, 2, "prefix two"))
    expect(await finished(one)).toBe(true)
    expect(await finished(two)).toBe(true)
    const servedBy = async (run: string) => new Set((await readJobRecords(connection.redis, run)).map((j) => j.worker))
    expect((await servedBy(one.id)).size).toBe(1)
    expect((await servedBy(two.id)).size).toBe(1)
  })
})
