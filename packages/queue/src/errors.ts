/**
 * The queue's typed errors. Each names what was wrong (the flag, the field,
 * the run, the job) and, where it helps, what to do about it.
 */
import { Data } from "effect"

/** `--queue` is not a Redis URL the queue can use. */
export class InvalidQueueUrl extends Data.TaggedError("InvalidQueueUrl")<{ readonly url: string; readonly problem: string }> {
  override get message(): string {
    return `--queue ${this.url}: ${this.problem}`
  }
}

/** Redis did not answer at the URL, or a command on it failed. */
export class QueueUnavailable extends Data.TaggedError("QueueUnavailable")<{ readonly url: string; readonly problem: string }> {
  override get message(): string {
    return `the queue at ${this.url} cannot be used: ${this.problem}`
  }
}

/** A run spec that cannot be enqueued; `field` names the part that is wrong. */
export class InvalidRunSpec extends Data.TaggedError("InvalidRunSpec")<{ readonly field: string; readonly problem: string }> {
  override get message(): string {
    return `${this.field}: ${this.problem}`
  }
}

/** No run with this id on this queue. */
export class RunNotFound extends Data.TaggedError("RunNotFound")<{ readonly run: string; readonly url: string }> {
  override get message(): string {
    return `no run ${JSON.stringify(this.run)} on the queue at ${this.url} (canopy status lists none by that id)`
  }
}

/** A job that failed for good: its attempts are spent, or its error cannot be cured by trying again. */
export interface JobFailure {
  readonly job: string
  readonly worker: string
  /** the error's tag (`ContextTooLong`, `GpuDeviceLost`, …), or "Error" */
  readonly error: string
  readonly message: string
  readonly attempts: number
}

/** Some of the run's jobs failed for good: the run cannot complete. */
export class RunFailed extends Data.TaggedError("RunFailed")<{ readonly run: string; readonly failures: ReadonlyArray<JobFailure> }> {
  override get message(): string {
    const [first] = this.failures
    const more = this.failures.length > 1 ? ` (and ${this.failures.length - 1} more jobs)` : ""
    return first === undefined
      ? `run ${this.run} failed`
      : `run ${this.run}: job ${first.job} failed on worker ${first.worker} after ${first.attempts} attempt${first.attempts === 1 ? "" : "s"}: ${first.error}: ${first.message}${more}`
  }
}

/** The run's samples are not all written yet. */
export class RunIncomplete extends Data.TaggedError("RunIncomplete")<{
  readonly run: string
  readonly samples: number
  readonly expected: number
}> {
  override get message(): string {
    return `run ${this.run} has ${this.samples} of its ${this.expected} samples; wait for it (canopy status ${this.run}) and collect it then`
  }
}

/** The worker's engine is gone (a lost GPU, or one that could not be set up): it takes no more jobs. */
export class WorkerEngineUnavailable extends Data.TaggedError("WorkerEngineUnavailable")<{
  readonly worker: string
  /** the setup error's tag (`GpuNoAdapter`, `ModelFileError`, `KvCacheOutOfMemory`, …) */
  readonly error: string
  readonly problem: string
}> {
  override get message(): string {
    return `worker ${this.worker} cannot serve: ${this.error}: ${this.problem}`
  }
}

export type QueueError = InvalidQueueUrl | QueueUnavailable

/** The tag of a tagged error, or "Error". */
export const tagOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" ? e._tag : "Error"

/** What an error says, without the "Error: " that String() puts before it. */
export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))
