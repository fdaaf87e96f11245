/**
 * The tuner: of a kernel's candidates (variants, tiles), the fastest on the
 * device in use, measured once and kept in the tuning cache.
 *
 *   1. A choice cached for this adapter, Canopy version, kernel and shape
 *      class is taken as it is: nothing is built or timed. Where the time
 *      budget ran out before every candidate was tried, the next run times
 *      the ones left against the cached choice, and so on until none is left:
 *      no run spends much more than its budget. So does a candidate the
 *      record never saw (offered since: the matrix kernels once their probe
 *      passes); one it saw skipped is not built again.
 *   2. Otherwise each candidate is built and checked against the float64
 *      reference on a small input; one that does not build, throws, or gives
 *      wrong results is skipped and reported, never chosen.
 *   3. The candidates left are timed on a small representative workload in
 *      rounds, each round every candidate once in a rotating order (so drift
 *      in clocks or load falls on all alike). A candidate whose fastest run
 *      is slower than the leader's slowest drops out: from the third round
 *      on, or at once where it is more than FAR_SLOWER times that (no noise
 *      explains it, and such a candidate costs the most to time). One left is
 *      clearly fastest and the rounds stop.
 *   4. The lowest median wins; today's default keeps its place unless another
 *      is at least MIN_GAIN faster, so noise does not flip choices.
 *
 * The first candidate is the default: the choice when tuning is off
 * (`enabled: false`, CANOPY_TUNE=off) or there is no cache to keep a choice in.
 */
import { Data } from "effect"
import { adapterOf, type GpuAdapterSummary } from "../gpu/adapters.ts"
import { summarizeAdapter } from "../gpu/webgpu.ts"
import { canopyVersion, defaultTuneCache, type ShapeClass, type TuneCache, type TuneKey } from "./cache.ts"
import { GpuTimer, median, type TimingSource } from "./timing.ts"

/** A candidate built and set up on its inputs. */
export interface CandidateTrial {
  /** runs on a small input and compares with the float64 reference: undefined when right, else what was wrong */
  check(): Promise<string | undefined>
  /** records one run of the timed workload */
  encode(encoder: GPUCommandEncoder): void
  destroy(): void
}

export interface TuneCandidate<V> {
  /** unique within its task; what the cache keeps */
  readonly name: string
  readonly value: V
  /** compiles the candidate and sets it up (a rejection, e.g. a ShaderCompileError, skips it) */
  readonly build: () => Promise<CandidateTrial>
}

export interface TuneTask<V> {
  readonly kernel: string
  readonly shape: ShapeClass
  /** the first is the default: what is used without tuning */
  readonly candidates: ReadonlyArray<TuneCandidate<V>>
}

/** How a choice was made. */
export type TuneHow =
  /** timed just now */
  | "measured"
  /** read from the tuning cache */
  | "cached"
  /** tuning off, or no cache to keep a choice in: the default */
  | "off"
  /** one candidate only (or only one passed its check) */
  | "only"

export interface CandidateTiming {
  readonly name: string
  /** per run of the workload (ms) */
  readonly medianMs: number
  readonly minMs: number
  readonly maxMs: number
  readonly runs: number
}

export interface TuneChoice<V> {
  readonly kernel: string
  readonly name: string
  readonly value: V
  readonly how: TuneHow
  /** every candidate timed, fastest first */
  readonly timings: ReadonlyArray<CandidateTiming>
  /** candidates that failed to build or to match the reference, and why */
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly reason: string }>
  /** candidates left untried when the time budget ran out */
  readonly untried: ReadonlyArray<string>
  /** submissions timed (0 for a cached choice) */
  readonly measurements: number
  /** what the timings were taken with ("wall-clock" when any one was) */
  readonly source: TimingSource | undefined
}

export type TuneProgress =
  | { readonly _tag: "Started"; readonly kernel: string; readonly shape: ShapeClass; readonly candidates: number }
  | { readonly _tag: "Checking"; readonly kernel: string; readonly candidate: string; readonly index: number; readonly of: number }
  | { readonly _tag: "Skipped"; readonly kernel: string; readonly candidate: string; readonly reason: string }
  | { readonly _tag: "Round"; readonly kernel: string; readonly round: number; readonly left: number }
  | { readonly _tag: "Chosen"; readonly kernel: string; readonly choice: string; readonly how: TuneHow; readonly timings: ReadonlyArray<CandidateTiming> }

export interface TuneOptions {
  /** false skips tuning, as CANOPY_TUNE=off does (default: on unless CANOPY_TUNE says off) */
  readonly enabled?: boolean
  /** where choices are kept (default: the file cache in Node; none in a browser, so tuning is off there unless one is given) */
  readonly cache?: TuneCache
  readonly onProgress?: (event: TuneProgress) => void
  /** time a task may take, building included, before it settles on the best so far (default 10 s) */
  readonly budgetMs?: number
  /** rounds before any candidate may drop out (default 3) */
  readonly minRounds?: number
  /** the most rounds (default 12) */
  readonly maxRounds?: number
  /** what one timed submission should last at least: the workload is repeated inside it to reach this (default 2 ms) */
  readonly targetMs?: number
  /** the version choices are keyed by (default: the kernels package's) */
  readonly version?: string
}

/** How much faster than the default another candidate must be to replace it. */
export const MIN_GAIN = 0.02
/** A candidate this many times slower than the leader's slowest run drops out after its first run. */
const FAR_SLOWER = 2
/** The most times one submission repeats the workload. */
const MAX_REPEATS = 64

export class TuneTaskInvalid extends Data.TaggedError("TuneTaskInvalid")<{ readonly kernel: string; readonly problem: string }> {
  override get message(): string {
    return `tuning ${this.kernel}: ${this.problem}`
  }
}

/** Every candidate failed to build or to match the reference: the kernel cannot be trusted on this device. */
export class TuneNoValidCandidate extends Data.TaggedError("TuneNoValidCandidate")<{
  readonly kernel: string
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly reason: string }>
}> {
  override get message(): string {
    return `tuning ${this.kernel}: no candidate builds and matches the reference (${this.skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")})`
  }
}

/** CANOPY_TUNE: "off", "0", "false" or "no" (any case) turn tuning off; unset or anything else leaves it on. */
export const tuningFromEnv = (env: Readonly<Record<string, string | undefined>> = typeof process === "undefined" ? {} : process.env): boolean =>
  !/^(off|0|false|no)$/i.test((env["CANOPY_TUNE"] ?? "").trim())

/** The adapter a device came from, as the cache keys it. */
export const tuneAdapterOf = (device: GPUDevice): GpuAdapterSummary => adapterOf(device) ?? summarizeAdapter(device.adapterInfo)

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const checkTask = (task: TuneTask<unknown>): void => {
  if (task.candidates.length === 0) throw new TuneTaskInvalid({ kernel: task.kernel, problem: "no candidates" })
  const names = new Set<string>()
  for (const c of task.candidates) {
    if (names.has(c.name)) throw new TuneTaskInvalid({ kernel: task.kernel, problem: `two candidates are named ${JSON.stringify(c.name)}` })
    names.add(c.name)
  }
}

/** The fastest valid candidate of `task` on `device`: cached, measured now, or the default (see the file's comment). */
export const tune = async <V>(device: GPUDevice, task: TuneTask<V>, options: TuneOptions = {}): Promise<TuneChoice<V>> => {
  checkTask(task)
  const report = options.onProgress ?? (() => {})
  const settled = (candidate: TuneCandidate<V>, how: TuneHow, rest: Partial<TuneChoice<V>> = {}): TuneChoice<V> => {
    const choice: TuneChoice<V> = {
      kernel: task.kernel, name: candidate.name, value: candidate.value, how,
      timings: [], skipped: [], untried: [], measurements: 0, source: undefined, ...rest
    }
    report({ _tag: "Chosen", kernel: task.kernel, choice: choice.name, how, timings: choice.timings })
    return choice
  }
  const fallback = task.candidates[0]!
  const cache = options.cache ?? defaultTuneCache()
  if (!(options.enabled ?? tuningFromEnv()) || cache === undefined) return settled(fallback, "off")
  if (task.candidates.length === 1) return settled(fallback, "only")
  const key: TuneKey = { adapter: tuneAdapterOf(device), version: options.version ?? canopyVersion(), kernel: task.kernel, shape: task.shape }
  const cached = cache.get(key)
  const hit = cached === undefined ? undefined : task.candidates.find((c) => c.name === cached.choice)
  const seen = new Set(cached === undefined ? [] : [cached.choice, ...Object.keys(cached.medianMs), ...(cached.skipped ?? [])])
  const left = task.candidates.filter((c) => c !== hit && ((cached?.untried ?? []).includes(c.name) || !seen.has(c.name)))
  if (hit !== undefined && left.length === 0) return settled(hit, "cached")
  // the cached choice goes first, as the default the ones left must beat
  const candidates = hit === undefined ? task.candidates : [hit, ...left]
  report({ _tag: "Started", kernel: task.kernel, shape: task.shape, candidates: candidates.length })
  const { choice, ...measured } = await measure(device, { ...task, candidates }, options, report)
  const medians = Object.fromEntries(measured.timings.map((t) => [t.name, t.medianMs]))
  const skipped = [...new Set([...(hit === undefined ? [] : (cached!.skipped ?? [])), ...measured.skipped.map((s) => s.name)])]
  cache.set(key, {
    choice,
    medianMs: hit === undefined ? medians : { ...cached!.medianMs, ...medians },
    tunedAt: new Date().toISOString(),
    ...(measured.untried.length > 0 ? { untried: measured.untried } : {}),
    ...(skipped.length > 0 ? { skipped } : {})
  })
  return settled(candidates.find((c) => c.name === choice)!, measured.timings.length > 1 ? "measured" : "only", measured)
}

interface Trial {
  readonly name: string
  readonly trial: CandidateTrial
  readonly samples: Array<number>
}

interface Measured {
  readonly choice: string
  readonly timings: ReadonlyArray<CandidateTiming>
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly reason: string }>
  readonly untried: ReadonlyArray<string>
  readonly measurements: number
  readonly source: TimingSource | undefined
}

const timingOf = (t: Trial): CandidateTiming => ({
  name: t.name, medianMs: median(t.samples), minMs: Math.min(...t.samples), maxMs: Math.max(...t.samples), runs: t.samples.length
})

/**
 * Builds and checks the candidates while the budget lasts, the first two
 * always (so a run that continues an earlier one tries one more at least),
 * then times the valid ones.
 */
const measure = async <V>(
  device: GPUDevice, task: TuneTask<V>, options: TuneOptions, report: (e: TuneProgress) => void
): Promise<Measured> => {
  const deadline = performance.now() + (options.budgetMs ?? 10_000)
  const trials: Array<Trial> = []
  const skipped: Array<{ name: string; reason: string }> = []
  const untried: Array<string> = []
  const timer = GpuTimer.create(device)
  try {
    for (const [index, candidate] of task.candidates.entries()) {
      if (index >= 2 && performance.now() > deadline) {
        untried.push(candidate.name)
        continue
      }
      report({ _tag: "Checking", kernel: task.kernel, candidate: candidate.name, index, of: task.candidates.length })
      const trial = await checked(candidate)
      if (typeof trial === "string") {
        skipped.push({ name: candidate.name, reason: trial })
        report({ _tag: "Skipped", kernel: task.kernel, candidate: candidate.name, reason: trial })
      } else {
        trials.push({ name: candidate.name, trial, samples: [] })
      }
    }
    if (trials.length === 0) throw new TuneNoValidCandidate({ kernel: task.kernel, skipped })
    if (trials.length === 1) return { choice: trials[0]!.name, timings: [], skipped, untried, measurements: 0, source: undefined }
    const source = await timeRounds(timer, trials, options, deadline, (round, left) => report({ _tag: "Round", kernel: task.kernel, round, left }))
    const timings = trials.filter((t) => t.samples.length > 0).map(timingOf).sort((a, b) => a.medianMs - b.medianMs)
    const best = timings[0]!
    const byDefault = timings.find((t) => t.name === task.candidates[0]!.name)
    const choice = byDefault !== undefined && byDefault.medianMs <= best.medianMs * (1 + MIN_GAIN) ? byDefault.name : best.name
    return { choice, timings, skipped, untried, measurements: timer.measurements, source }
  } finally {
    for (const t of trials) t.trial.destroy()
    timer.destroy()
  }
}

/** The candidate built and checked, or why it is skipped. */
const checked = async (candidate: TuneCandidate<unknown>): Promise<CandidateTrial | string> => {
  let trial: CandidateTrial
  try {
    trial = await candidate.build()
  } catch (e) {
    return `does not build: ${errorText(e)}`
  }
  let problem: string | undefined
  try {
    problem = await trial.check()
  } catch (e) {
    problem = `fails to run: ${errorText(e)}`
  }
  if (problem === undefined) return trial
  trial.destroy()
  return `wrong results: ${problem}`
}

/**
 * Times the trials in rounds (see the file's comment) and returns the timing
 * source. One warm-up submission each first; the first one's time sets how
 * many runs of the workload a submission holds, so each lasts about targetMs.
 */
const timeRounds = async (
  timer: GpuTimer, trials: ReadonlyArray<Trial>, options: TuneOptions, deadline: number, onRound: (round: number, left: number) => void
): Promise<TimingSource> => {
  let source = timer.source
  const run = async (t: Trial, repeats: number): Promise<number> => {
    const m = await timer.measure((encoder) => {
      for (let i = 0; i < repeats; i++) t.trial.encode(encoder)
    })
    if (m.source === "wall-clock") source = "wall-clock"
    return m.ms / repeats
  }
  let warm = Infinity
  for (const t of trials) warm = Math.min(warm, await run(t, 1))
  const repeats = Math.max(1, Math.min(MAX_REPEATS, Math.ceil((options.targetMs ?? 2) / Math.max(warm, 1e-3))))
  const minRounds = options.minRounds ?? 3
  const maxRounds = Math.max(minRounds, options.maxRounds ?? 12)
  let left = [...trials]
  for (let round = 0; round < maxRounds && left.length > 1; round++) {
    for (let i = 0; i < left.length; i++) {
      const t = left[(i + round) % left.length]!
      t.samples.push(await run(t, repeats))
    }
    onRound(round + 1, left.length)
    const leader = left.reduce((a, b) => (median(b.samples) < median(a.samples) ? b : a))
    const bound = Math.max(...leader.samples) * (round + 1 < minRounds ? FAR_SLOWER : 1)
    left = left.filter((t) => t === leader || Math.min(...t.samples) <= bound)
    if (round + 1 >= minRounds && performance.now() > deadline) break
  }
  return source
}

const shapeText = (shape: ShapeClass): string => Object.entries(shape).map(([k, v]) => `${k} ${String(v)}`).join(", ")

const msText = (ms: number): string => (ms >= 10 ? ms.toFixed(1) : ms >= 0.1 ? ms.toFixed(3) : ms.toPrecision(3))

/** One line for a person watching (the command line prints these). */
export const describeTuneProgress = (e: TuneProgress): string => {
  switch (e._tag) {
    case "Started":
      return `tuning ${e.kernel} (${shapeText(e.shape)}): ${e.candidates} candidates`
    case "Checking":
      return `tuning ${e.kernel}: building and checking ${e.candidate} (${e.index + 1}/${e.of})`
    case "Skipped":
      return `tuning ${e.kernel}: skipped ${e.candidate}, ${e.reason}`
    case "Round":
      return `tuning ${e.kernel}: timed round ${e.round}, ${e.left} candidate${e.left === 1 ? "" : "s"}`
    case "Chosen": {
      const why = { measured: "measured", cached: "cached", off: "tuning off", only: "the only candidate" }[e.how]
      const figures = e.timings.slice(0, 4).map((t) => `${t.name} ${msText(t.medianMs)} ms`).join(", ")
      return `${e.kernel}: ${e.choice} (${why}${figures === "" ? "" : `; ${figures}${e.timings.length > 4 ? ", …" : ""}`})`
    }
  }
}
