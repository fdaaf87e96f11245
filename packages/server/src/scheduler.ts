/**
 * The waiting line in front of the engine. A request is admitted (or refused
 * with QueueFull while `maxWaiting` requests already wait, or ShuttingDown
 * once the server stops), waits for one of `concurrency` places, runs, and
 * leaves. Running requests go to the engine together: its scheduler batches
 * the samples of all of them into each decode step, admitting them as batch
 * places and KV blocks free up. This line bounds what is handed to the engine
 * at once and how many more may wait behind it (the engine's own queue is
 * unbounded), and knows which run and which wait, for /metrics and for
 * Retry-After.
 *
 * `concurrency` defaults to DEFAULT_CONCURRENCY requests: enough to keep a
 * batch full of samples from many small requests (each admitted request's
 * samples queue in the engine for its places, in arrival order), few enough
 * that a burst past it waits here, where it is counted and can be refused.
 */
import { Effect, Scope, Semaphore } from "effect"
import { QueueFull, ShuttingDown } from "./errors.ts"

/** Requests handed to the engine at once when the server is not told otherwise. */
export const DEFAULT_CONCURRENCY = 64

export interface SchedulerOptions {
  /** requests that may wait while `concurrency` run; more are refused with 429 */
  readonly maxWaiting: number
  /** requests that run at once, batched together by the engine (default DEFAULT_CONCURRENCY) */
  readonly concurrency?: number
}

export interface QueueStats {
  readonly runningRequests: number
  readonly waitingRequests: number
  readonly runningSequences: number
  readonly waitingSequences: number
}

/** One admitted request: runs its work once its turn comes. */
export interface Ticket {
  readonly run: <A, E, R>(work: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** How long a client should wait before retrying, from how long requests have been taking. */
const retryAfter = (meanSeconds: number, ahead: number, concurrency: number): number =>
  Math.min(600, Math.max(1, Math.ceil((meanSeconds * (ahead + 1)) / concurrency)))

export class Scheduler {
  private running = { requests: 0, sequences: 0 }
  private waiting = { requests: 0, sequences: 0 }
  private closed = false
  /** an exponential mean of request run times, seconds */
  private meanSeconds = 1

  private constructor(private readonly lock: Semaphore.Semaphore, readonly options: Required<SchedulerOptions>) {}

  static make(options: SchedulerOptions): Effect.Effect<Scheduler> {
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    return Effect.map(Semaphore.make(concurrency), (lock) => new Scheduler(lock, { maxWaiting: options.maxWaiting, concurrency }))
  }

  stats(): QueueStats {
    return {
      runningRequests: this.running.requests,
      waitingRequests: this.waiting.requests,
      runningSequences: this.running.sequences,
      waitingSequences: this.waiting.sequences
    }
  }

  get retryAfterSeconds(): number {
    return retryAfter(this.meanSeconds, this.waiting.requests, this.options.concurrency)
  }

  /** From now on every request is refused with ShuttingDown; those admitted already go on. */
  close(): void {
    this.closed = true
  }

  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Admits a request of `sequences` samples into the line. Its place is given
   * back when the scope closes, whether or not its work ever ran.
   */
  admit(sequences: number): Effect.Effect<Ticket, QueueFull | ShuttingDown, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.suspend((): Effect.Effect<{ state: "waiting" | "running" | "done" }, QueueFull | ShuttingDown> => {
        if (this.closed) return Effect.fail(new ShuttingDown({ retryAfterSeconds: this.retryAfterSeconds }))
        // Waiting only counts when no place is free: a request that runs at once never waits.
        const free = this.running.requests + this.waiting.requests < this.options.concurrency
        if (!free && this.waiting.requests >= this.options.maxWaiting) {
          return Effect.fail(new QueueFull({ waiting: this.waiting.requests, limit: this.options.maxWaiting, retryAfterSeconds: this.retryAfterSeconds }))
        }
        this.waiting.requests++
        this.waiting.sequences += sequences
        return Effect.succeed({ state: "waiting" as "waiting" | "running" | "done" })
      }),
      (slot) =>
        Effect.sync(() => {
          if (slot.state === "waiting") {
            this.waiting.requests--
            this.waiting.sequences -= sequences
          }
          slot.state = "done"
        })
    ).pipe(
      Effect.map((slot): Ticket => ({
        run: (work) =>
          this.lock.withPermits(1)(
            Effect.suspend(() => {
              if (slot.state !== "waiting") return Effect.die(new Error("a ticket runs once"))
              slot.state = "running"
              this.waiting.requests--
              this.waiting.sequences -= sequences
              this.running.requests++
              this.running.sequences += sequences
              const started = performance.now()
              return work.pipe(
                Effect.ensuring(Effect.sync(() => {
                  this.running.requests--
                  this.running.sequences -= sequences
                  slot.state = "done"
                  this.meanSeconds = 0.8 * this.meanSeconds + 0.2 * ((performance.now() - started) / 1000)
                }))
              )
            })
          )
      }))
    )
  }
}
