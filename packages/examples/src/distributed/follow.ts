/**
 * Following a run from the machine that enqueued it: its status line, over
 * every worker, until the last sample is written (or a job fails for good).
 * On a terminal the line is rewritten every half second; in a log, a line is
 * written when something changed and at most every 10 seconds.
 */
import { type QueueClient, type QueueUnavailable, RunFailed, type RunNotFound, type RunProgress, runProgress } from "@canopy/queue"
import { Effect } from "effect"
import type { ProgressMode } from "../pipeline/progress.ts"
import { progressLine } from "../terminal/progressLine.ts"
import { progressLineText } from "./progressText.ts"

const POLL_MS = 500
const LOG_EVERY_MS = 10_000

export const followRun = (run: string, mode: ProgressMode): Effect.Effect<RunProgress, RunNotFound | RunFailed | QueueUnavailable, QueueClient> =>
  Effect.gen(function*() {
    const line = progressLine()
    const tty = mode === "bars" || (mode === "auto" && process.stderr.isTTY === true)
    const shown = new Set<string>()
    let lastLogged = 0
    let lastSamples = -1
    for (;;) {
      const progress = yield* runProgress(run)
      const now = Date.now()
      for (const f of progress.startFailures) {
        const key = `${f.worker}@${f.at}`
        if (mode !== "silent" && !shown.has(key)) line.note(`worker ${f.worker} could not start: ${f.error}: ${f.message}`)
        shown.add(key)
      }
      const changed = progress.samples !== lastSamples
      if (mode !== "silent" && (tty || (changed && now - lastLogged >= LOG_EVERY_MS) || progress.state === "done")) {
        line.update(progressLineText(progress, now))
        lastLogged = now
      }
      lastSamples = progress.samples
      if (progress.state === "done" || progress.state === "failed") {
        line.end()
        if (progress.state === "failed") return yield* new RunFailed({ run, failures: progress.failures })
        return progress
      }
      yield* Effect.sleep(POLL_MS)
    }
  })
