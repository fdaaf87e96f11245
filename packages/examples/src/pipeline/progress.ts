import cliProgress from "cli-progress"

export interface ProgressTotals {
  readonly problems: number
  readonly samples: number
}

/** What the sampling loop reports; every method is cheap enough to call per token batch. */
export interface Progress {
  readonly start: (totals: ProgressTotals) => void
  /** Tokens generated since the last call, for the live tokens/s figure. */
  readonly tokens: (count: number) => void
  readonly sampleDone: () => void
  readonly problemDone: () => void
  /** A message that must not be garbled by the bars. */
  readonly log: (message: string) => void
  readonly stop: () => void
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

const rate = (counters: Counters, now: number): number => {
  const seconds = (now - counters.startedAt) / 1000
  return seconds > 0 ? counters.tokens / seconds : 0
}

const progressLine = (counters: Counters, now: number): string =>
  `problems ${counters.problems}/${counters.totals.problems}, samples ${counters.samples}/${counters.totals.samples}, ` +
  `tokens ${counters.tokens}, ${rate(counters, now).toFixed(1)} tokens/s`

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
    stop: () => {
      stream.write(`done: ${progressLine(counters, now())}\n`)
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
  const rateText = () => `${counters.tokens} tokens, ${rate(counters, now()).toFixed(1)} tokens/s`
  return {
    start: (totals) => {
      counters.totals = totals
      counters.startedAt = now()
      problems = multibar.create(totals.problems, 0, { label: "problems" })
      samples = multibar.create(totals.samples, 0, { label: "samples " })
      // A text-only row: throughput has no total to fill towards.
      throughput = multibar.create(1, 0, { text: rateText() }, { format: "tokens   {text}" })
    },
    tokens: (count) => {
      counters.tokens += count
      throughput?.update(0, { text: rateText() })
    },
    sampleDone: () => {
      counters.samples += 1
      samples?.increment()
      throughput?.update(0, { text: rateText() })
    },
    problemDone: () => {
      counters.problems += 1
      problems?.increment()
    },
    log: (message) => multibar.log(`${message}\n`),
    stop: () => {
      throughput?.update(0, { text: rateText() })
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
