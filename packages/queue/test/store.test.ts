/**
 * The run's data on a real redis-server: a run enqueued twice adds no job,
 * samples written in any order, any number of times, from several
 * connections at once, are stored once each (the first write wins) with
 * counters that match an independent count, and collecting gives them back
 * in order — or says why not.
 */
import fc from "fast-check"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  collectRun, enqueueRun, keys, missingSamples, openConnection, QueueClient, type QueueConnection, readProgress, readRun, recordFailure,
  type RunRecord, type RunSpec, writeSample
} from "../src/index.ts"
import { scaled } from "./limits.ts"
import { type RedisServer, startRedis } from "./redis.ts"

let redis: RedisServer
let connections: Array<QueueConnection> = []

beforeAll(async () => {
  redis = await startRedis({ lifetimeSeconds: Math.ceil(scaled(600_000) / 1000) })
  connections = await Promise.all([0, 1, 2].map(() => openConnection(redis.url)))
})
afterAll(async () => {
  await Promise.all(connections.map((c) => c.close()))
  await redis?.stop()
})

const run = <A, E>(effect: Effect.Effect<A, E, QueueClient>): Promise<A> => Effect.runPromise(effect.pipe(Effect.provide(QueueClient.layer(redis.url))))

const specOf = (problems: number, samples: number, blockSize: number): RunSpec => ({
  model: "synthetic:tiny",
  kvDtype: "f16",
  prefix: `prefix ${problems}×${samples}`,
  problems: Array.from({ length: problems }, (_, i) => ({ id: `p${i}`, prompt: `problem ${i}` })),
  samplesPerProblem: samples,
  blockSize,
  sampling: { seed: 3 }
})

describe("enqueueing a run", () => {
  it("stores the run and one job per (problem, block), and adds nothing when enqueued again", async () => {
    const record = await run(enqueueRun(specOf(3, 5, 2), "rtwice000001"))
    expect(record).toMatchObject({ id: "rtwice000001", problems: 3, samplesPerProblem: 5, blockSize: 2, jobs: 9, pool: "default", attempts: 3 })
    const queue = connections[0]!.queue(record.group)
    const ids = async () => (await queue.getJobs(["waiting"])).map((j) => j.id).sort()
    const first = await ids()
    expect(first).toHaveLength(9)
    expect(first).toContain("rtwice000001.2.4")
    expect(await run(enqueueRun(specOf(3, 5, 2), "rtwice000001"))).toEqual(record)
    expect(await ids()).toEqual(first)
    expect(await readRun(connections[0]!.redis, record.id)).toEqual(record)
    const taken = await Effect.runPromiseExit(enqueueRun(specOf(3, 6, 2), "rtwice000001").pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(JSON.stringify(taken)).toContain("is the id of another run")
  })

  it("refuses a bad spec before writing anything", async () => {
    const before = await connections[0]!.redis.zcard(keys.runs)
    const exit = await Effect.runPromiseExit(enqueueRun({ ...specOf(1, 1, 1), blockSize: 0 }).pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(exit._tag).toBe("Failure")
    expect(JSON.stringify(exit)).toContain("InvalidRunSpec")
    expect(await connections[0]!.redis.zcard(keys.runs)).toBe(before)
  })

  it("fails with QueueUnavailable, naming the URL, where no Redis answers", async () => {
    const exit = await Effect.runPromiseExit(enqueueRun(specOf(1, 1, 1)).pipe(Effect.provide(QueueClient.layer("redis://127.0.0.1:1/0"))))
    const text = JSON.stringify(exit)
    for (const part of ["QueueUnavailable", "redis://127.0.0.1:1/0", "ECONNREFUSED"]) expect(text).toContain(part)
  })
})

describe("samples", () => {
  it("are written once each, whatever the order and the repeats, with counters that match", async () => {
    let n = 0
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 9 })), { minLength: 1, maxLength: 60 }),
      async (problems, samples, writes) => {
        const record = await run(enqueueRun(specOf(problems, samples, 2), `rwrites${String(n++).padStart(5, "0")}`))
        const planned = writes.map(([p, s, c, tokens]) => ({ problem: p % problems, sample: s % samples, worker: `w${c}`, tokens }))
        const results = await Promise.all(planned.map((w, i) =>
          writeSample(connections[i % 3]!.redis, record, w.problem, w.sample, {
            text: `text ${i}`, tokens: w.tokens, finishReason: "length", worker: w.worker
          })))
        // the first write of each key, in the order Redis took them, is the one kept
        const kept = new Map<string, number>()
        results.forEach((won, i) => {
          const key = `${planned[i]!.problem}:${planned[i]!.sample}`
          if (won) {
            expect(kept.has(key)).toBe(false)
            kept.set(key, i)
          }
        })
        expect(new Set(planned.map((w) => `${w.problem}:${w.sample}`))).toEqual(new Set(kept.keys()))
        const stored = await connections[1]!.redis.hgetall(keys.samples(record.id))
        for (const [key, i] of kept) expect(JSON.parse(stored[key]!).text).toBe(`text ${i}`)
        const progress = await readProgress(connections[2]!.redis, record, async () => ({}))
        const winners = [...kept.values()].map((i) => planned[i]!)
        expect(progress.samples).toBe(kept.size)
        expect(progress.tokens).toBe(winners.reduce((t, w) => t + w.tokens, 0))
        const full = Array.from({ length: problems }, (_, p) => winners.filter((w) => w.problem === p).length === samples).filter((x) => x)
        expect(progress.problemsDone).toBe(full.length)
        for (const w of progress.workers) {
          expect(w.samples).toBe(winners.filter((x) => x.worker === w.id).length)
          expect(w.tokens).toBe(winners.filter((x) => x.worker === w.id).reduce((t, x) => t + x.tokens, 0))
        }
        for (let p = 0; p < problems; p++) {
          const missing = await missingSamples(connections[0]!.redis, record.id, p, 0, samples)
          expect(missing).toEqual(Array.from({ length: samples }, (_, s) => s).filter((s) => !kept.has(`${p}:${s}`)))
        }
      }
    ), { numRuns: 25 })
  })
})

describe("collecting", () => {
  const fill = async (record: RunRecord, except?: string) => {
    for (let p = 0; p < record.problems; p++) {
      for (let s = record.samplesPerProblem - 1; s >= 0; s--) {
        if (`${p}:${s}` === except) continue
        await writeSample(connections[0]!.redis, record, p, s, { text: `${p}/${s}`, tokens: 1, finishReason: "stop", worker: "w" })
      }
    }
  }

  it("gives every sample back in problem and sample order once all are written", async () => {
    const record = await run(enqueueRun(specOf(3, 4, 3), "rcollect0001"))
    await fill(record)
    const collected = await run(collectRun(record.id))
    expect(collected.prefix).toBe("prefix 3×4")
    expect(collected.problems.map((p) => p.problem.id)).toEqual(["p0", "p1", "p2"])
    expect(collected.problems.map((p) => p.samples.map((s) => s.text))).toEqual([0, 1, 2].map((p) => [0, 1, 2, 3].map((s) => `${p}/${s}`)))
  })

  it("says how many samples are missing, or which job failed, instead", async () => {
    const record = await run(enqueueRun(specOf(2, 2, 2), "rcollect0002"))
    await fill(record, "1:0")
    const incomplete = await Effect.runPromiseExit(collectRun(record.id).pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(JSON.stringify(incomplete)).toContain("RunIncomplete")
    expect(JSON.stringify(incomplete)).toContain('"samples":3,"expected":4')
    await recordFailure(connections[0]!.redis, record.id, { job: "rcollect0002.1.0", worker: "w", error: "ContextTooLong", message: "too long", attempts: 1 })
    const failed = await Effect.runPromiseExit(collectRun(record.id).pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(JSON.stringify(failed)).toContain("RunFailed")
    expect(JSON.stringify(failed)).toContain("ContextTooLong")
    const missing = await Effect.runPromiseExit(collectRun("rnosuchrun00").pipe(Effect.provide(QueueClient.layer(redis.url))))
    expect(JSON.stringify(missing)).toContain("RunNotFound")
  })
})
