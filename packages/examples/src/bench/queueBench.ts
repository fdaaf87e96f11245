/**
 * The distributed pipeline's benchmark: the same run on 1, 2 and 3 (or any
 * list of) local `canopy worker` processes over one redis-server of its own,
 * timed from enqueueing to the last sample written.
 *
 * Each worker count has its own pool of workers, all started up front, so
 * the counts can take turns: every pool first runs the workload once untimed
 * (model load and pipeline compiles happen there), then each round runs it
 * once on every pool, the order rotating from round to round. Every run is
 * checked: each (problem, sample) written once, and every run's samples the
 * first run's (the seeds make them the same whatever the workers).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  collectRun, enqueueRun, openConnection, QueueClient, type QueueConnection, readLiveWorkers, runProgress, type RunSpec
} from "@canopy/queue"
import { Data, Effect } from "effect"
import { pairedRatios, type Spread, spreadOf } from "./figures.ts"

/** A benchmark run that lost or changed samples, or a process that would not start. */
export class QueueBenchFailed extends Data.TaggedError("QueueBenchFailed")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface QueueBenchOptions {
  readonly workerCounts: ReadonlyArray<number>
  readonly spec: Omit<RunSpec, "pool">
  readonly model: string
  readonly concurrency: number
  readonly repeats: number
  readonly redisServer: string
  /** the canopy command line to start workers with: [node, entry] */
  readonly canopy: readonly [string, string]
  readonly onProgress?: (text: string) => void
}

export interface WorkerCountResult {
  readonly workers: number
  readonly seconds: Spread
  readonly samplesPerSecond: Spread
  readonly tokensPerSecond: Spread
  /** per round: the one-worker time over this count's */
  readonly speedUp: Spread
  readonly rounds: ReadonlyArray<number>
}

export interface QueueBenchResult {
  readonly samples: number
  readonly jobs: number
  readonly tokens: number
  readonly results: ReadonlyArray<WorkerCountResult>
}

interface Spawned {
  readonly child: ChildProcess
  readonly output: () => string
}

const spawnGroup = (command: string, args: ReadonlyArray<string>): Spawned => {
  // its own process group: a kill reaches whatever it started
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"], detached: true })
  let output = ""
  child.stderr!.on("data", (d: Buffer) => void (output = (output + d.toString()).slice(-4000)))
  child.on("error", (e) => void (output += String(e)))
  return { child, output: () => output }
}

const killGroup = (p: Spawned, signal: NodeJS.Signals): void => {
  try {
    process.kill(-p.child.pid!, signal)
  } catch {
    // gone already
  }
}

const gone = (p: Spawned): Promise<void> =>
  p.child.exitCode !== null || p.child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => p.child.once("exit", () => resolve()))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Tries `attempt` every 100 ms until it returns something; a spawned process that exits first fails it. */
const waitFor = async <A>(what: string, process: Spawned, attempt: () => Promise<A | undefined>, ms: number): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const found = await attempt().catch(() => undefined)
    if (found !== undefined) return found
    if (process.child.exitCode !== null) throw new QueueBenchFailed({ problem: `${what} exited with ${process.child.exitCode}:\n${process.output()}` })
    if (Date.now() > deadline) throw new QueueBenchFailed({ problem: `${what} did not start within ${ms / 1000} s:\n${process.output()}` })
    await sleep(100)
  }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no free port"))))
    })
  })

const run = <A, E>(url: string, effect: Effect.Effect<A, E, QueueClient>) => Effect.runPromise(effect.pipe(Effect.provide(QueueClient.layer(url))))

/** One run of the workload on a pool: seconds from enqueueing to the last sample, and every sample's text. */
const timedRun = async (url: string, spec: QueueBenchOptions["spec"], pool: string) => {
  const started = performance.now()
  const record = await run(url, enqueueRun({ ...spec, pool }))
  for (;;) {
    const progress = await run(url, runProgress(record.id))
    if (progress.state === "failed") throw new QueueBenchFailed({ problem: `run ${record.id} on ${pool}: ${JSON.stringify(progress.failures[0])}` })
    if (progress.state === "done") break
    await sleep(50)
  }
  const seconds = (performance.now() - started) / 1000
  // collecting checks that each (problem, sample) is there once
  const collected = await run(url, collectRun(record.id))
  const texts = collected.problems.map((p) => p.samples.map((s) => s.text))
  const tokens = collected.problems.reduce((n, p) => n + p.samples.reduce((m, s) => m + s.tokens, 0), 0)
  return { seconds, texts, tokens, jobs: record.jobs }
}

const poolOf = (workers: number) => `bench-${workers}-workers`

export const benchQueue = async (options: QueueBenchOptions): Promise<QueueBenchResult> => {
  const say = options.onProgress ?? (() => {})
  const dir = mkdtempSync(join(tmpdir(), "canopy-bench-queue-"))
  const port = await freePort()
  const redis = spawnGroup(options.redisServer, ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"])
  const url = `redis://127.0.0.1:${port}/0`
  const workers: Array<Spawned> = []
  let connection: QueueConnection | undefined
  try {
    connection = await waitFor("redis-server", redis, () => openConnection(url), 30_000)
    for (const count of options.workerCounts) {
      for (let i = 0; i < count; i++) {
        workers.push(spawnGroup(options.canopy[0], [
          options.canopy[1], "worker", "--queue", url, "--model", options.model, "--pool", poolOf(count), "--id", `${poolOf(count)}-${i + 1}`,
          "--concurrency", String(options.concurrency), "--kv-dtype", options.spec.kvDtype, "--quiet"
        ]))
      }
    }
    say(`started redis-server on port ${port} and ${workers.length} workers; waiting for them to load the model`)
    const ids = options.workerCounts.flatMap((count) => Array.from({ length: count }, (_, i) => `${poolOf(count)}-${i + 1}`))
    await Promise.all(ids.map((id, k) => waitFor(`worker ${id}`, workers[k]!, async () => {
      const live = await readLiveWorkers(connection!.redis)
      return live.some((w) => w.id === id && w.state === "serving") ? true : undefined
    }, 600_000)))
    let reference: ReadonlyArray<ReadonlyArray<string>> | undefined
    const check = (texts: ReadonlyArray<ReadonlyArray<string>>, what: string) => {
      reference ??= texts
      if (JSON.stringify(texts) !== JSON.stringify(reference)) throw new QueueBenchFailed({ problem: `${what} drew other samples than the first run` })
    }
    for (const count of options.workerCounts) {
      say(`warm-up on ${count} worker${count === 1 ? "" : "s"} (untimed)`)
      check((await timedRun(url, options.spec, poolOf(count))).texts, `the warm-up on ${count} workers`)
    }
    const times = new Map<number, Array<number>>(options.workerCounts.map((c) => [c, []]))
    let tokens = 0
    let jobs = 0
    for (let round = 0; round < options.repeats; round++) {
      const order = options.workerCounts.map((_, i) => options.workerCounts[(i + round) % options.workerCounts.length]!)
      for (const count of order) {
        say(`round ${round + 1}/${options.repeats}: ${count} worker${count === 1 ? "" : "s"}`)
        const r = await timedRun(url, options.spec, poolOf(count))
        check(r.texts, `round ${round + 1} on ${count} workers`)
        times.get(count)!.push(r.seconds)
        tokens = r.tokens
        jobs = r.jobs
      }
    }
    const samples = options.spec.problems.length * options.spec.samplesPerProblem
    const first = times.get(options.workerCounts[0]!)!
    return {
      samples,
      jobs,
      tokens,
      results: options.workerCounts.map((count) => {
        const rounds = times.get(count)!
        return {
          workers: count,
          seconds: spreadOf(rounds),
          samplesPerSecond: spreadOf(rounds.map((s) => samples / s)),
          tokensPerSecond: spreadOf(rounds.map((s) => tokens / s)),
          speedUp: spreadOf(pairedRatios(first, rounds)),
          rounds
        }
      })
    }
  } finally {
    for (const w of workers) killGroup(w, "SIGTERM")
    await Promise.race([Promise.all(workers.map(gone)), sleep(10_000)])
    for (const w of workers) killGroup(w, "SIGKILL")
    await connection?.close()
    killGroup(redis, "SIGKILL")
    await gone(redis)
    rmSync(dir, { recursive: true, force: true })
  }
}
