/**
 * Distributed runs for real: a redis-server on a free loopback port (with
 * its append-only file written before each reply), three worker processes
 * on the software adapter with the `tiny` model, and the runs checked
 * against one local request of the whole tree on an engine in this process:
 * every (problem, sample) exactly once and equal to the local one; each
 * worker prefilling a prefix once, however many of its jobs share it; two
 * prefix groups on one worker each; a worker killed with SIGKILL in the
 * middle of a job, whose jobs are taken up within the stalled-job interval;
 * Redis killed and restarted during a run; and a worker that cannot set up
 * its engine, which takes no job and says why.
 */
import {
  byteTokenizer, Engine, type EngineService, type GenerateRequest, Gpu, Model, type SamplingOptions
} from "@canopy/runtime"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  collectRun, enqueueRun, keys, openConnection, problemSeed, QueueClient, type QueueConnection, readJobRecords, readProgress,
  type RunRecord, type RunSpec, type WorkerTiming
} from "../src/index.ts"
import { eventually, scaled } from "./limits.ts"
import { type RedisServer, startRedis } from "./redis.ts"
import { spawnWorker, type WorkerConfig, type WorkerProcess } from "./workers.ts"

const TIMING: Partial<WorkerTiming> = { tickMs: 200, leaseMs: 3_000, lockMs: 4_000, stalledCheckMs: 1_000 }
/** The longest a dead worker's job may wait to be taken up: its lock lapses, two stalled checks see it, a lease lapses if it was the group's only server. */
const RECOVERY_MS = TIMING.lockMs! + 2 * TIMING.stalledCheckMs! + TIMING.leaseMs! + 2 * TIMING.tickMs!
const CONCURRENCY = 2

const PREFIX = "Solve each task in Python.\nQUESTION: add two numbers\nANSWER:\n```python\nprint(sum(map(int, input().split())))\n```\n"
const SAMPLING: Partial<SamplingOptions> = { temperature: 0.8, topK: 0, topP: 1, seed: 5, stop: ["```"] }

let redis: RedisServer
let connection: QueueConnection
let reference: EngineService
const scope = Effect.runSync(Scope.make())
const workers: Array<WorkerProcess> = []
let runs = 0

const start = (id: string, extra: Partial<WorkerConfig> = {}): WorkerProcess => {
  const worker = spawnWorker({ url: redis.url, id, concurrency: CONCURRENCY, lifetimeMs: scaled(900_000), timing: TIMING, ...extra })
  workers.push(worker)
  return worker
}

const ready = (w: WorkerProcess) => eventually(() => w.output().includes(`ready ${w.id}`) || w.child.exitCode !== null, 300_000, 200)

beforeAll(async () => {
  redis = await startRedis({ appendonly: true, lifetimeSeconds: Math.ceil(scaled(1_800_000) / 1000) })
  connection = await openConnection(redis.url)
  const started = ["w1", "w2", "w3"].map((id) => start(id))
  const services = await Effect.runPromise(
    Layer.buildWithScope(
      Engine.layer({ kvDtype: "f16" }).pipe(Layer.provideMerge(Model.layer({ kind: "synthetic", model: "tiny", seed: 0 })), Layer.provideMerge(Gpu.layer())),
      scope
    )
  )
  reference = Context.get(services, Engine)
  for (const w of started) expect(await ready(w), w.output()).toBe(true)
  for (const w of started) expect(w.output()).toContain(`ready ${w.id}`)
})

afterAll(async () => {
  for (const w of workers) w.kill()
  await Promise.all(workers.map((w) => w.exited))
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await connection?.close()
  await redis?.stop()
})

const specOf = (problems: number, samples: number, blockSize: number, maxTokens: number, extra: Partial<RunSpec> = {}): RunSpec => ({
  model: "synthetic:tiny",
  kvDtype: "f16",
  prefix: PREFIX,
  problems: Array.from({ length: problems }, (_, i) => ({ id: `task-${i}`, prompt: `QUESTION: task ${i}: print ${i} squared\nANSWER:\n\`\`\`python\n` })),
  samplesPerProblem: samples,
  blockSize,
  sampling: { ...SAMPLING, maxTokens },
  ...extra
})

const enqueue = (spec: RunSpec) =>
  Effect.runPromise(enqueueRun(spec, `rdist${String(runs++).padStart(7, "0")}`).pipe(Effect.provide(QueueClient.layer(redis.url))))

const progressOf = (record: RunRecord) =>
  readProgress(connection.redis, record, () => connection.queue(record.group).getJobCounts("waiting", "active", "delayed"))

const finished = (record: RunRecord) => eventually(async () => (await progressOf(record)).state === "done", 600_000, 250)

/** The run as one local request of its whole tree: the prefix, each problem with its seed, all its samples. */
const localSamples = async (spec: RunSpec): Promise<Array<Array<string>>> => {
  const request: GenerateRequest = {
    tree: {
      text: spec.prefix,
      children: spec.problems.map((p) => ({ text: p.prompt, samples: spec.samplesPerProblem, sampling: { seed: problemSeed(spec.sampling.seed ?? 0, p.id) } }))
    },
    sampling: spec.sampling
  }
  const result = await Effect.runPromise(reference.generate(request))
  return spec.problems.map((_, i) => result.completions.filter((c) => c.path[0] === i).sort((a, b) => a.sample - b.sample).map((c) => c.text))
}

/** Every sample once, each the local request's; no sample drawn twice. */
const expectExactlyTheLocalSamples = async (record: RunRecord, spec: RunSpec) => {
  const collected = await Effect.runPromise(collectRun(record.id).pipe(Effect.provide(QueueClient.layer(redis.url))))
  expect(await connection.redis.hlen(keys.samples(record.id))).toBe(spec.problems.length * spec.samplesPerProblem)
  expect(collected.problems.map((p) => p.samples.map((s) => s.text))).toEqual(await localSamples(spec))
  return collected
}

describe("a distributed run on three worker processes", () => {
  it("writes every (problem, sample) once, equal to a local run, each worker prefilling the prefix once", async () => {
    const spec = specOf(3, 4, 2, 6)
    const record = await enqueue(spec)
    expect(await finished(record)).toBe(true)
    const { jobs } = await expectExactlyTheLocalSamples(record, spec)
    expect(jobs).toHaveLength(6)
    expect(jobs.reduce((n, j) => n + j.written, 0)).toBe(12)
    // a job that found fewer tokens cached than the prefix holds prefilled it: once per worker at most
    const prefixTokens = byteTokenizer().encode(PREFIX, { addBos: true }).length
    for (const worker of new Set(jobs.map((j) => j.worker))) {
      const mine = jobs.filter((j) => j.worker === worker)
      expect(mine.filter((j) => j.reusedTokens < prefixTokens).length, `${worker}: ${JSON.stringify(mine)}`).toBeLessThanOrEqual(1)
    }
    const progress = await progressOf(record)
    for (const w of progress.workers.filter((w) => w.jobs > 0)) expect(w.prefillTokens).toBeLessThan(w.promptTokens)
  })

  it("sends two prefix groups to one worker each", async () => {
    const one = await enqueue(specOf(2, 2, 2, 4, { prefix: `${PREFIX}# one\n` }))
    const two = await enqueue(specOf(2, 2, 2, 4, { prefix: `${PREFIX}# two\n` }))
    expect(await finished(one)).toBe(true)
    expect(await finished(two)).toBe(true)
    for (const run of [one, two]) expect(new Set((await readJobRecords(connection.redis, run.id)).map((j) => j.worker)).size).toBe(1)
  })

  it("loses nothing and draws nothing twice when a worker is killed with SIGKILL in the middle of a job", async () => {
    const spec = specOf(2, 6, 3, 24)
    const record = await enqueue(spec)
    // BullMQ's own view of who runs what: the victim is a worker with one of the run's jobs active, killed at once
    let victim: WorkerProcess | undefined
    let caught: Array<string> = []
    expect(await eventually(async () => {
      const active = await connection.queue(record.group).getJobs(["active"])
      victim = workers.find((w) => w.child.exitCode === null && active.some((j) => j.processedBy === w.id))
      caught = active.filter((j) => j.processedBy === victim?.id).map((j) => j.id!)
      if (victim !== undefined) victim.kill()
      return victim !== undefined
    }, 300_000, 50)).toBe(true)
    const killedAt = Date.now()
    await victim!.exited
    start(`${victim!.id}-again`) // the next tests have three workers again
    expect(await finished(record)).toBe(true)
    const { jobs } = await expectExactlyTheLocalSamples(record, spec)
    expect(jobs.every((j) => j.worker !== victim!.id || j.finishedAt < killedAt)).toBe(true)
    for (const id of caught) {
      const redone = jobs.find((j) => j.job === id)!
      expect(redone.worker).not.toBe(victim!.id)
      expect(redone.attempt).toBeGreaterThan(1)
      expect(redone.startedAt - killedAt).toBeLessThan(scaled(RECOVERY_MS))
    }
  })

  it("resumes a run when Redis is killed and restarted under it, from its append-only file", async () => {
    const spec = specOf(2, 6, 2, 16)
    const record = await enqueue(spec)
    expect(await eventually(async () => (await progressOf(record)).samples >= 2, 300_000, 50)).toBe(true)
    await redis.crash()
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    await redis.restart()
    expect(await finished(record)).toBe(true)
    await expectExactlyTheLocalSamples(record, spec)
    expect((await progressOf(record)).failures).toEqual([])
  })

  it("has a worker that cannot set up its engine take no job and say why, and the run finish on a worker that can", async () => {
    const spec = specOf(1, 2, 1, 4, { pool: "lonely" })
    const record = await enqueue(spec)
    const broken = start("broken", { pool: "lonely", env: { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" } })
    const exit = await broken.exited
    expect(exit.code, broken.output()).toBe(1)
    expect(broken.output()).toContain("exit GpuNoAdapter")
    const waiting = await connection.queue(record.group).getJobs(["waiting"])
    expect(waiting.map((j) => j.attemptsStarted)).toEqual([0, 0])
    const progress = await progressOf(record)
    expect(progress.startFailures.map((f) => [f.worker, f.error])).toEqual([["broken", "GpuNoAdapter"]])
    expect(progress.state).toBe("waiting")
    const healthy = start("healthy", { pool: "lonely" })
    expect(await ready(healthy)).toBe(true)
    expect(await finished(record)).toBe(true)
    await expectExactlyTheLocalSamples(record, spec)
  })
})
