import cliProgress from "cli-progress"

export interface ProgressTotals {
  /** Absent for work that is not problems (`canopy generate`): the display then shows samples only. */
  readonly problems?: number
  readonly samples: number
}

/** A run's own totals, given at the end so that the closing line agrees with the run's summary to the digit. */
export interface RunFigures {
  readonly tokens: number
  readonly seconds: number
}

/** Throughput, one way everywhere: generated tokens over the wall time since the run started. */
export const tokensPerSecond = (tokens: number, seconds: number): number => (seconds > 0 ? tokens / seconds : 0)

/** What the sampling loop reports; every method is cheap enough to call per token batch. */
export interface Progress {
  readonly start: (totals: ProgressTotals) => void
  /** Tokens generated since the last call, for the live tokens/s figure. */
  readonly tokens: (count: number) => void
  readonly sampleDone: () => void
  readonly problemDone: () => void
  /** A message that must not be garbled by the bars. */
  readonly log: (message: string) => void
  /** Ends the display; with the run's figures, its last tokens/s is theirs instead of this display's clock. */
  readonly stop: (final?: RunFigures) => void
}

/**
 * "auto" draws bars on a terminal and writes occasional plain lines otherwise
 * (CI logs would fill with redraws); "silent" is for tests and --quiet.
 */
export type ProgressMode = "auto" | "bars" | "lines" | "silent"

export interface ProgressOptions {
  readonly mode?: ProgressMode
  /** Defaults to stderr so progress never mixes into output piped from stdout. */
  readonly stream?: NodeJS.WriteStream
  /** Least time between two plain lines. */
  readonly lineIntervalMs?: number
  readonly now?: () => number
}

export const silentProgress: Progress = {
  start: () => {},
  tokens: () => {},
  sampleDone: () => {},
  problemDone: () => {},
  log: () => {},
  stop: () => {}
}

interface Counters {
  totals: ProgressTotals
  problems: number
  samples: number
  tokens: number
  startedAt: number
}

/** Tokens and seconds so far, or the run's own figures once it has ended. */
const figures = (counters: Counters, now: number, final?: RunFigures): RunFigures =>
  final ?? { tokens: counters.tokens, seconds: (now - counters.startedAt) / 1000 }

const rateText = (f: RunFigures): string => `tokens ${f.tokens}, ${tokensPerSecond(f.tokens, f.seconds).toFixed(1)} tokens/s`

const progressLine = (counters: Counters, now: number, final?: RunFigures): string =>
  (counters.totals.problems === undefined ? "" : `problems ${counters.problems}/${counters.totals.problems}, `) +
  `samples ${counters.samples}/${counters.totals.samples}, ${rateText(figures(counters, now, final))}`

const linesProgress = (stream: NodeJS.WritableStream, intervalMs: number, now: () => number): Progress => {
  const counters: Counters = { totals: { problems: 0, samples: 0 }, problems: 0, samples: 0, tokens: 0, startedAt: now() }
  let lastLine = Number.NEGATIVE_INFINITY
  const maybeWrite = () => {
    const t = now()
    if (t - lastLine < intervalMs) return
    lastLine = t
    stream.write(`${progressLine(counters, t)}\n`)
  }
  return {
    start: (totals) => {
      counters.totals = totals
      counters.startedAt = now()
      lastLine = counters.startedAt
    },
    tokens: (count) => {
      counters.tokens += count
      maybeWrite()
    },
    sampleDone: () => {
      counters.samples += 1
      maybeWrite()
    },
    problemDone: () => {
      counters.problems += 1
      maybeWrite()
    },
    log: (message) => {
      stream.write(`${message}\n`)
    },
    stop: (final) => {
      stream.write(`done: ${progressLine(counters, now(), final)}\n`)
    }
  }
}

const barsProgress = (stream: NodeJS.WriteStream, now: () => number): Progress => {
  const counters: Counters = { totals: { problems: 0, samples: 0 }, problems: 0, samples: 0, tokens: 0, startedAt: now() }
  const multibar = new cliProgress.MultiBar(
    {
      stream,
      hideCursor: true,
      clearOnComplete: false,
      format: "{label} |{bar}| {value}/{total}",
      barsize: 30
    },
    cliProgress.Presets.shades_classic
  )
  let problems: cliProgress.SingleBar | undefined
  let samples: cliProgress.SingleBar | undefined
  let throughput: cliProgress.SingleBar | undefined
  const throughputText = (final?: RunFigures) => {
    const f = figures(counters, now(), final)
    return `${f.tokens} tokens, ${tokensPerSecond(f.tokens, f.seconds).toFixed(1)} tokens/s`
  }
  return {
    start: (totals) => {
      counters.totals = totals
      counters.startedAt = now()
      if (totals.problems !== undefined) problems = multibar.create(totals.problems, 0, { label: "problems" })
      samples = multibar.create(totals.samples, 0, { label: "samples " })
      // A text-only row: throughput has no total to fill towards.
      throughput = multibar.create(1, 0, { text: throughputText() }, { format: "tokens   {text}" })
    },
    tokens: (count) => {
      counters.tokens += count
      throughput?.update(0, { text: throughputText() })
    },
    sampleDone: () => {
      counters.samples += 1
      samples?.increment()
      throughput?.update(0, { text: throughputText() })
    },
    problemDone: () => {
      counters.problems += 1
      problems?.increment()
    },
    log: (message) => multibar.log(`${message}\n`),
    stop: (final) => {
      throughput?.update(0, { text: throughputText(final) })
      multibar.stop()
    }
  }
}

export const createProgress = (options: ProgressOptions = {}): Progress => {
  const stream = options.stream ?? process.stderr
  const now = options.now ?? (() => performance.now())
  const mode = options.mode ?? "auto"
  switch (mode) {
    case "silent":
      return silentProgress
    case "lines":
      return linesProgress(stream, options.lineIntervalMs ?? 10_000, now)
    case "bars":
      return barsProgress(stream, now)
    case "auto":
      return stream.isTTY === true ? barsProgress(stream, now) : linesProgress(stream, options.lineIntervalMs ?? 10_000, now)
  }
}
