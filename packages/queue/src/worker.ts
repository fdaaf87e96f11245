/**
 * The worker loop. Each prefix group is a BullMQ queue; the worker keeps one
 * BullMQ Worker per group it serves and takes jobs from one group at a time
 * (chosen by `chooseGroup`), with up to `concurrency` jobs in flight over all
 * of them, each one a `generate` call on the engine: with several in flight
 * the engine's scheduler can batch them.
 *
 * Every tick the worker renews its heartbeat and its leases on the groups it
 * serves, looks at the groups of its model, and moves to another group only
 * when the chosen one differs (the BullMQ Worker of the old group is paused:
 * its jobs in flight finish, it takes no more). BullMQ's locks and stalled-job
 * check do the rest: a worker that dies stops renewing its jobs' locks, and
 * any Worker on that queue moves them back to waiting; a group nobody serves
 * any more gets a watcher that runs only that check.
 *
 * A job fails for good when its error cannot be cured by trying again (a
 * prompt too long for the model, bad sampling values, an engine that ignores
 * the block's numbering); otherwise BullMQ tries it again, up to the run's
 * attempts. A lost GPU fails the job (to be retried elsewhere) and stops the worker.
 */
import { hostname } from "node:os"
import { type Job, UnrecoverableError, WaitingError, Worker } from "bullmq"
import { chooseGroup, type GroupView, orphanedGroups } from "./affinity.ts"
import { type JobFailure, messageOf, tagOf } from "./errors.ts"
import { type JobContext, runJob, type SampleEngine } from "./job.ts"
import { KEY_PREFIX, keys, queueName } from "./keys.ts"
import type { QueueConnection } from "./QueueClient.ts"
import { DEFAULT_POOL, type GroupInfo, type JobData, type KvDtype } from "./spec.ts"
import { type JobRecord, recordFailure, recordJob } from "./store.ts"
import { redisOptions } from "./url.ts"

export interface WorkerTiming {
  /** how often the worker looks at the groups and renews its heartbeat and leases (default 500 ms) */
  readonly tickMs: number
  /** a worker silent this long no longer counts as serving its groups (default 15 s) */
  readonly leaseMs: number
  /** BullMQ's lock on a job in flight, renewed at half of it (default 30 s): a dead worker's jobs return after it lapses */
  readonly lockMs: number
  /** how often BullMQ looks for jobs whose lock lapsed (default 10 s) */
  readonly stalledCheckMs: number
  /** times a job may be recovered from a dead worker before it fails (default 2) */
  readonly maxStalled: number
}

export const DEFAULT_TIMING: WorkerTiming = { tickMs: 500, leaseMs: 15_000, lockMs: 30_000, stalledCheckMs: 10_000, maxStalled: 2 }

export interface WorkerOptions {
  /** unique among the queue's workers (default: host-pid) */
  readonly id?: string
  /** the model key (modelKey): the worker serves runs of this model */
  readonly model: string
  readonly kvDtype: KvDtype
  readonly pool?: string
  /** jobs in flight at once (each a generate call) */
  readonly concurrency: number
  readonly engine: SampleEngine
  /** what status shows of the engine: its adapter, its model */
  readonly describe?: string
  /** join a group other workers serve only when more jobs than this wait there (default: concurrency) */
  readonly stealAbove?: number
  readonly timing?: Partial<WorkerTiming>
  /** called with each heartbeat's status */
  readonly onStatus?: (status: WorkerStatus) => void
}

/** What the worker publishes in its heartbeat. */
export interface WorkerStatus {
  readonly id: string
  readonly host: string
  readonly pid: number
  readonly model: string
  readonly kvDtype: KvDtype
  readonly pool: string
  readonly describe?: string
  readonly state: "serving" | "stopping" | "stopped" | "failed"
  readonly concurrency: number
  readonly inFlight: number
  readonly jobs: number
  readonly samples: number
  readonly tokens: number
  /** generated tokens per second over the last RATE_WINDOW_MS */
  readonly tokensPerSecond: number
  /** the group it takes jobs from, and the groups it has served */
  readonly current?: string
  readonly held: ReadonlyArray<string>
  readonly startedAt: number
  readonly heartbeatAt: number
  readonly error?: string
}

export interface WorkerSummary {
  readonly jobs: number
  readonly samples: number
  readonly tokens: number
  /** jobs whose attempt here failed (they were retried elsewhere or failed for good) */
  readonly failed: number
}

/** Errors that are the same wherever the job runs: the job fails at once. */
const UNRECOVERABLE = new Set([
  "InvalidPromptTree", "InvalidSampling", "ContextTooLong", "EngineCapacityError", "NonFiniteLogits", "RunNotFound", "UnexpectedSample"
])

/** Errors after which this worker's engine is gone: the job is retried elsewhere and the worker stops. */
const FATAL = new Set(["GpuDeviceLost"])

const RATE_WINDOW_MS = 10_000

export const defaultWorkerId = (): string => `${hostname()}-${process.pid}`

interface Subscription {
  readonly group: string
  readonly worker: Worker<JobData, JobRecord>
  inFlight: number
  /** ticks since it last had a job in flight or was the group jobs are taken from */
  idleTicks: number
}

/** Subscriptions idle this many ticks are closed (their two Redis connections with them). */
const IDLE_TICKS = 40

export class QueueWorker {
  readonly id: string
  private readonly timing: WorkerTiming
  private readonly pool: string
  private readonly subs = new Map<string, Subscription>()
  private readonly watchers = new Map<string, Worker<JobData>>()
  private readonly held = new Set<string>()
  /** why each job's last attempt here failed, for the failure record */
  private readonly errors = new Map<string, { readonly error: string; readonly message: string }>()
  private readonly startedAt = Date.now()
  private readonly rate: Array<readonly [ms: number, tokens: number]> = []
  private readonly tally = { jobs: 0, samples: 0, tokens: 0, failed: 0 }
  private current: string | undefined
  private state: WorkerStatus["state"] = "serving"
  private fatal: unknown
  private timer: NodeJS.Timeout | undefined
  private ticking: Promise<void> = Promise.resolve()
  private busy = false
  private stopped: Promise<void> | undefined
  private finish: () => void = () => {}
  /** Settles when the worker has stopped: after stop(), or after a fatal error stopped it. */
  readonly done: Promise<void>

  private constructor(private readonly connection: QueueConnection, private readonly options: WorkerOptions) {
    this.id = options.id ?? defaultWorkerId()
    this.timing = { ...DEFAULT_TIMING, ...options.timing }
    this.pool = options.pool ?? DEFAULT_POOL
    this.done = new Promise((resolve) => (this.finish = resolve))
  }

  /** Starts serving: the first tick runs before this returns. */
  static async start(connection: QueueConnection, options: WorkerOptions): Promise<QueueWorker> {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`concurrency must be an integer ≥ 1, got ${options.concurrency}`)
    }
    const worker = new QueueWorker(connection, options)
    await worker.tick()
    // a tick that waits on Redis (a restart) is not queued behind: the next one starts when it ends
    worker.timer = setInterval(() => {
      if (!worker.busy) worker.ticking = worker.tick()
    }, worker.timing.tickMs)
    return worker
  }

  /** The error that stopped the worker by itself, if one did. */
  get fatalError(): unknown {
    return this.fatal
  }

  get summary(): WorkerSummary {
    return { ...this.tally }
  }

  /**
   * Stops taking jobs; the jobs in flight finish, and those still running
   * after `graceMs` are stopped between two steps and returned to waiting
   * (their written samples stay; whoever takes the job draws only the rest).
   */
  stop(graceMs: number): Promise<void> {
    this.stopped ??= this.shutdown(graceMs)
    return this.stopped
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.state = "stopping"
    clearInterval(this.timer)
    await this.ticking
    await this.heartbeat().catch(() => {})
    const cancel = setTimeout(() => {
      for (const sub of this.subs.values()) sub.worker.cancelAllJobs("the worker is stopping")
    }, graceMs)
    await Promise.all([...this.subs.values()].map((s) => s.worker.close()))
    clearTimeout(cancel)
    await Promise.all([...this.watchers.values()].map((w) => w.close()))
    this.state = this.fatal === undefined ? "stopped" : "failed"
    const { redis } = this.connection
    const pipeline = redis.pipeline()
    for (const group of this.subs.keys()) pipeline.zrem(keys.serving(group), this.id)
    pipeline.set(keys.worker(this.id), JSON.stringify(this.status()), "PX", this.timing.leaseMs)
    await pipeline.exec().catch(() => {})
    this.finish()
  }

  private async tick(): Promise<void> {
    if (this.state !== "serving") return
    this.busy = true
    try {
      for (const sub of this.subs.values()) sub.idleTicks = sub.inFlight > 0 || sub.group === this.current ? 0 : sub.idleTicks + 1
      await this.heartbeat()
      const views = await this.groupViews()
      await this.follow(views)
      await this.watch(views)
      await this.closeIdle()
    } catch {
      // Redis away (a restart): the next tick tries again; BullMQ's own connections wait it out
    } finally {
      this.busy = false
    }
  }

  private status(): WorkerStatus {
    const now = Date.now()
    const [since, tokensThen] = this.rate[0] ?? [now, this.tally.tokens]
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      model: this.options.model,
      kvDtype: this.options.kvDtype,
      pool: this.pool,
      ...(this.options.describe !== undefined ? { describe: this.options.describe } : {}),
      state: this.state,
      concurrency: this.options.concurrency,
      inFlight: this.inFlight(),
      ...this.tally,
      tokensPerSecond: now > since ? ((this.tally.tokens - tokensThen) * 1000) / (now - since) : 0,
      ...(this.current !== undefined ? { current: this.current } : {}),
      held: [...this.held],
      startedAt: this.startedAt,
      heartbeatAt: now,
      ...(this.fatal !== undefined ? { error: `${tagOf(this.fatal)}: ${messageOf(this.fatal)}` } : {})
    }
  }

  private inFlight(): number {
    let n = 0
    for (const sub of this.subs.values()) n += sub.inFlight
    return n
  }

  private async heartbeat(): Promise<void> {
    const now = Date.now()
    this.rate.push([now, this.tally.tokens])
    while (this.rate.length > 1 && this.rate[0]![0] < now - RATE_WINDOW_MS) this.rate.shift()
    const status = this.status()
    this.options.onStatus?.(status)
    const pipeline = this.connection.redis.pipeline()
    pipeline.set(keys.worker(this.id), JSON.stringify(status), "PX", this.timing.leaseMs)
    pipeline.zadd(keys.workers, now, this.id)
    for (const sub of this.subs.values()) {
      if (sub.inFlight > 0 || sub.group === this.current) pipeline.zadd(keys.serving(sub.group), now + this.timing.leaseMs, this.id)
    }
    await pipeline.exec()
  }

  /** The groups of this worker's model, KV type and pool, with their jobs and live servers. */
  private async groupViews(): Promise<Array<GroupView>> {
    const { redis } = this.connection
    const now = Date.now()
    const mine = Object.entries(await redis.hgetall(keys.groups)).filter(([, text]) => {
      const info = JSON.parse(text) as GroupInfo
      return info.model === this.options.model && info.kvDtype === this.options.kvDtype && info.pool === this.pool
    })
    return Promise.all(mine.map(async ([group]) => {
      const [counts, servers] = await Promise.all([
        this.connection.queue(group).getJobCounts("waiting", "active"),
        redis.zrangebyscore(keys.serving(group), now, "+inf")
      ])
      return { group, waiting: counts["waiting"] ?? 0, active: counts["active"] ?? 0, servers }
    }))
  }

  /** Moves to the group chooseGroup picks, when a job slot is free for it. */
  private async follow(views: ReadonlyArray<GroupView>): Promise<void> {
    const choice = chooseGroup(views, {
      worker: this.id,
      held: this.held,
      current: this.current,
      stealAbove: this.options.stealAbove ?? this.options.concurrency
    })
    const others = (group: string) => this.inFlight() - (this.subs.get(group)?.inFlight ?? 0)
    if (choice !== undefined && choice.group !== this.current && others(choice.group) < this.options.concurrency) {
      if (choice.reason === "claim") {
        const now = Date.now()
        const won = await this.connection.redis.canopyClaimGroup(keys.serving(choice.group), this.id, now, now + this.timing.leaseMs)
        if (won === 0) return
      }
      const previous = this.current !== undefined ? this.subs.get(this.current) : undefined
      this.current = choice.group
      if (previous !== undefined) await previous.worker.pause(true)
      await this.subscribe(choice.group)
    }
    // Every slot the other groups' jobs in flight leave free is the current group's.
    const current = this.current !== undefined ? this.subs.get(this.current) : undefined
    if (current !== undefined) current.worker.concurrency = Math.max(1, this.options.concurrency - others(current.group))
  }

  private async subscribe(group: string): Promise<void> {
    const existing = this.subs.get(group)
    if (existing !== undefined) {
      existing.worker.concurrency = Math.max(1, this.options.concurrency - this.inFlight() + existing.inFlight)
      await existing.worker.resume()
      return
    }
    const counter = { inFlight: 0 }
    const worker = new Worker<JobData, JobRecord>(
      queueName(group),
      (job, token, signal) => this.process(group, counter, job, token!, signal!),
      {
        ...this.bullOptions(),
        concurrency: Math.max(1, this.options.concurrency - this.inFlight())
      }
    )
    worker.on("failed", (job, error) => void this.failed(job, error))
    worker.on("error", () => {}) // connection errors: BullMQ reconnects by itself
    this.subs.set(group, Object.assign(counter, { group, worker, idleTicks: 0 }))
    await this.connection.redis.zadd(keys.serving(group), Date.now() + this.timing.leaseMs, this.id)
  }

  private bullOptions() {
    return {
      connection: redisOptions(this.connection.address),
      prefix: KEY_PREFIX,
      name: this.id,
      lockDuration: this.timing.lockMs,
      stalledInterval: this.timing.stalledCheckMs,
      maxStalledCount: this.timing.maxStalled
    }
  }

  /** Groups whose jobs are active with nobody serving them get a stalled-job check of their own; it ends when they are served again. */
  private async watch(views: ReadonlyArray<GroupView>): Promise<void> {
    const orphans = new Set(orphanedGroups(views).filter((g) => !this.subs.has(g)))
    for (const group of orphans) {
      if (this.watchers.has(group)) continue
      const watcher = new Worker<JobData>(queueName(group), undefined, { ...this.bullOptions(), autorun: false })
      watcher.on("error", () => {})
      this.watchers.set(group, watcher)
      void watcher.startStalledCheckTimer().catch(() => {})
    }
    for (const [group, watcher] of this.watchers) {
      if (orphans.has(group)) continue
      this.watchers.delete(group)
      await watcher.close()
    }
  }

  private async closeIdle(): Promise<void> {
    for (const [group, sub] of this.subs) {
      if (sub.idleTicks < IDLE_TICKS || sub.inFlight > 0) continue
      this.subs.delete(group)
      await sub.worker.close()
      await this.connection.redis.zrem(keys.serving(group), this.id)
    }
  }

  private jobContext(): JobContext {
    return {
      redis: this.connection.redis,
      queueUrl: this.connection.address.shown,
      worker: this.id,
      engine: this.options.engine,
      describe: this.options.describe ?? this.options.model,
      onTokens: (n) => void (this.tally.tokens += n)
    }
  }

  private async process(
    group: string, sub: { inFlight: number }, job: Job<JobData, JobRecord>, token: string, signal: AbortSignal
  ): Promise<JobRecord> {
    sub.inFlight++
    this.held.add(group)
    try {
      const record = await runJob(this.jobContext(), job.id!, job.data, job.attemptsStarted, signal)
      await recordJob(this.connection.redis, job.data.run, record)
      this.tally.jobs++
      this.tally.samples += record.written
      return record
    } catch (e) {
      if (signal.aborted) {
        // stopped by a graceful stop: back to waiting, no attempt spent
        await job.moveToWait(token)
        throw new WaitingError()
      }
      this.tally.failed++
      const error = tagOf(e)
      this.errors.set(job.id!, { error, message: messageOf(e) })
      if (FATAL.has(error)) {
        this.fatal ??= e
        void this.stop(0)
      }
      throw UNRECOVERABLE.has(error) ? new UnrecoverableError(`${error}: ${messageOf(e)}`) : new Error(`${error}: ${messageOf(e)}`)
    } finally {
      sub.inFlight--
    }
  }

  /** A job that failed for good is recorded with its run, where status and collect see it. */
  private async failed(job: Job<JobData, JobRecord> | undefined, error: Error): Promise<void> {
    if (job === undefined || job.id === undefined) return
    const attempts = job.opts.attempts ?? 1
    const final = error instanceof UnrecoverableError || error.name === "UnrecoverableError" || job.attemptsMade >= attempts
    if (!final) return
    const known = this.errors.get(job.id)
    this.errors.delete(job.id)
    const failure: JobFailure = {
      job: job.id,
      worker: this.id,
      error: known?.error ?? (error.message.includes("stalled more than allowable limit") ? "JobStalled" : "Error"),
      message: known?.message ?? error.message,
      attempts: job.attemptsMade
    }
    await recordFailure(this.connection.redis, job.data.run, failure).catch(() => {})
  }
}
