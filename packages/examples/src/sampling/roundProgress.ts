/**
 * Progress of a comparison: warm-ups, then rounds × modes × samples, one
 * status line on standard error. After the first round every mode has been
 * timed once, so the line adds how long the rest should take.
 *
 * On a terminal the line is rewritten as samples finish; elsewhere (logs, CI)
 * one line is written as each run starts, so a log shows where a slow run was.
 */
import type { ProgressMode } from "../pipeline/progress.ts"

export interface RoundPlan {
  readonly rounds: number
  readonly modes: number
  readonly samples: number
}

export interface RoundProgress {
  readonly warmUp: (index: number, mode: string) => void
  readonly runStart: (round: number, modeIndex: number, mode: string) => void
  readonly sampleDone: () => void
  /** `modeIndex` is the mode's place in the comparison (not in the round's order), `seconds` its run's time. */
  readonly runEnd: (round: number, modeIndex: number, seconds: number) => void
  /** Clears the status line; after the last run, writes the totals. */
  readonly stop: () => void
}

export interface RoundProgressOptions {
  readonly mode?: ProgressMode
  readonly stream?: NodeJS.WriteStream
  readonly now?: () => number
}

const secondsText = (s: number): string => (s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`)

/**
 * Seconds left, taking each mode's run to cost what it did in the first
 * round: the runs not yet done, less what the current run has already spent.
 * Undefined until the first round has timed every mode.
 */
export const secondsLeft = (
  plan: RoundPlan,
  firstRound: ReadonlyArray<number | undefined>,
  doneByMode: ReadonlyArray<number>,
  current?: { readonly modeIndex: number; readonly elapsed: number }
): number | undefined => {
  if (firstRound.length < plan.modes || firstRound.some((s) => s === undefined)) return undefined
  let left = 0
  for (let m = 0; m < plan.modes; m++) left += Math.max(0, plan.rounds - (doneByMode[m] ?? 0)) * firstRound[m]!
  if (current !== undefined) left -= Math.min(current.elapsed, firstRound[current.modeIndex]!)
  return Math.max(0, left)
}

export const createRoundProgress = (plan: RoundPlan, options: RoundProgressOptions = {}): RoundProgress => {
  const stream = options.stream ?? process.stderr
  const now = options.now ?? (() => performance.now())
  const mode = options.mode ?? "auto"
  if (mode === "silent") return { warmUp: () => {}, runStart: () => {}, sampleDone: () => {}, runEnd: () => {}, stop: () => {} }
  const tty = mode === "bars" || (mode === "auto" && stream.isTTY === true)
  const started = now()
  const firstRound: Array<number | undefined> = Array.from({ length: plan.modes }, () => undefined)
  const totalSamples = plan.rounds * plan.modes * plan.samples
  const doneByMode: Array<number> = Array.from({ length: plan.modes }, () => 0)
  let runsDone = 0
  let samplesDone = 0
  let current: { round: number; modeIndex: number; name: string; startedAt: number } | undefined
  let shown = false

  const status = (): string => {
    const t = now()
    const elapsed = (t - started) / 1000
    const running = current === undefined ? undefined : { modeIndex: current.modeIndex, elapsed: (t - current.startedAt) / 1000 }
    const left = secondsLeft(plan, firstRound, doneByMode, running)
    const where = current === undefined
      ? ""
      : `round ${current.round + 1}/${plan.rounds} · ${current.name} (${(runsDone % plan.modes) + 1}/${plan.modes}) · `
    const eta = left === undefined ? "time left known after round 1" : `about ${secondsText(left)} left`
    return `${where}samples ${samplesDone}/${totalSamples} · ${secondsText(elapsed)} elapsed · ${eta}`
  }
  const write = (text: string) => {
    if (tty) {
      if (shown) stream.write("\r\x1b[K")
      // a pseudo-terminal can report 0 columns: take a common width then
      const columns = stream.columns !== undefined && stream.columns > 0 ? stream.columns : 120
      stream.write(text.slice(0, Math.max(20, columns - 1)))
      shown = true
    } else stream.write(`${text}\n`)
  }
  return {
    warmUp: (index, name) => write(`warm-up ${index + 1}/${plan.modes}: ${name}, untimed (compiles pipelines, fills caches)`),
    runStart: (round, modeIndex, name) => {
      current = { round, modeIndex, name, startedAt: now() }
      write(status())
    },
    sampleDone: () => {
      samplesDone += 1
      if (tty) write(status())
    },
    runEnd: (round, modeIndex, seconds) => {
      if (round === 0) firstRound[modeIndex] = seconds
      runsDone += 1
      doneByMode[modeIndex] = (doneByMode[modeIndex] ?? 0) + 1
      current = undefined
      if (tty) write(status())
    },
    stop: () => {
      if (tty && shown) stream.write("\r\x1b[K")
      shown = false
      // a comparison that failed part way has no totals to give
      if (runsDone === plan.rounds * plan.modes) {
        stream.write(`timed ${plan.rounds} rounds × ${plan.modes} modes × ${plan.samples} samples; ${secondsText((now() - started) / 1000)} with the warm-ups\n`)
      }
    }
  }
}
