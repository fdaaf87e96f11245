import { mkdir, open } from "node:fs/promises"
import { dirname } from "node:path"
import type { SampleEvaluation, TestVerdict } from "./evaluate.ts"

/** One line of samples.jsonl; snake_case keys to match APPS-style tooling. */
export interface SampleRecord {
  readonly problem_id: string
  readonly sample: number
  readonly text: string
  readonly tokens: number
  /** e.g. "stop" (stop sequence or end token) or "length" (token budget spent). */
  readonly finish_reason: string
  readonly passed?: boolean
  readonly verdicts?: ReadonlyArray<TestVerdict>
}

export interface SampleInput {
  readonly problemId: string
  readonly sample: number
  readonly text: string
  readonly tokens: number
  readonly finishReason: string
  readonly evaluation?: SampleEvaluation
}

export const sampleRecord = (input: SampleInput): SampleRecord => {
  const base = {
    problem_id: input.problemId,
    sample: input.sample,
    text: input.text,
    tokens: input.tokens,
    finish_reason: input.finishReason
  }
  return input.evaluation === undefined
    ? base
    : { ...base, passed: input.evaluation.passed, verdicts: input.evaluation.verdicts }
}

export const formatSamplesJsonl = (records: Iterable<SampleRecord>): string => {
  let text = ""
  for (const record of records) text += `${JSON.stringify(record)}\n`
  return text
}

export interface SamplesWriter {
  readonly path: string
  /** Appends one line; writes are queued, so callers need not await each one. */
  readonly write: (record: SampleRecord) => Promise<void>
  readonly close: () => Promise<void>
}

/**
 * Streams records to a JSONL file as samples finish, so a run that dies part
 * way still leaves every finished sample on disk.
 */
export const openSamplesWriter = async (path: string): Promise<SamplesWriter> => {
  await mkdir(dirname(path), { recursive: true })
  const handle = await open(path, "w")
  let queue: Promise<unknown> = Promise.resolve()
  const enqueue = (job: () => Promise<unknown>): Promise<void> => {
    const next = queue.then(job)
    queue = next.catch(() => undefined)
    return next.then(() => undefined)
  }
  return {
    path,
    write: (record) => enqueue(() => handle.write(`${JSON.stringify(record)}\n`)),
    close: () => enqueue(() => handle.close())
  }
}
