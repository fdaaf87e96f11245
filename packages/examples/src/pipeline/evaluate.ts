import { spawnSync } from "node:child_process"
import { chmod, lstat, mkdtemp, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { detectIsolation, type Isolation, NO_ISOLATION } from "./isolation.ts"
import type { Problem } from "./problems.ts"
import { DEFAULT_LIMITS, type RunLimits, type RunOutcome, runProgram, RunnerError } from "./runner.ts"

export type VerdictKind =
  | "passed"
  | "wrong-answer"
  | "runtime-error"
  | "time-limit"
  | "memory-limit"
  | "output-limit"

export interface TestVerdict {
  /** Index into the problem's tests. */
  readonly test: number
  readonly verdict: VerdictKind
  readonly seconds: number
  /** What went wrong, short enough for a log line; absent when passed. */
  readonly detail?: string
}

export interface SampleEvaluation {
  readonly passed: boolean
  /** One per test run; evaluation stops at the first failing test unless told otherwise. */
  readonly verdicts: ReadonlyArray<TestVerdict>
}

export class EvaluatorSetupError extends Schema.TaggedError<EvaluatorSetupError>()("EvaluatorSetupError", {
  message: Schema.String
}) {}

export class WorkdirError extends Schema.TaggedError<WorkdirError>()("WorkdirError", {
  message: Schema.String
}) {}

export type EvaluationError = RunnerError | WorkdirError

export interface EvaluatorOptions {
  /** Python interpreter; resolved once to its real path so shims (pyenv) need no environment. */
  readonly python?: string
  readonly limits?: Partial<RunLimits>
  /** Samples evaluated at the same time. */
  readonly concurrency?: number
  /**
   * false skips the namespace probe: programs share the host's network,
   * processes and filesystem (see ISOLATION.md).
   */
  readonly isolate?: boolean
  readonly stopOnFirstFailure?: boolean
}

export interface EvaluationItem {
  readonly problem: Problem
  readonly program: string
}

export interface Evaluator {
  readonly python: string
  /**
   * What every run of this evaluator gets; a run that cannot be given all of
   * it fails with RunnerError instead of running with less.
   */
  readonly isolation: Isolation
  readonly limits: RunLimits
  readonly evaluate: (problem: Problem, program: string) => Effect.Effect<SampleEvaluation, EvaluationError>
  /** Results in the order of `items`, at most `concurrency` running at once. */
  readonly evaluateAll: (
    items: ReadonlyArray<EvaluationItem>
  ) => Effect.Effect<ReadonlyArray<SampleEvaluation>, EvaluationError>
}

/** Trailing spaces on each line and trailing blank lines do not count; everything else does. */
export const normalizeOutput = (text: string): string =>
  text.replace(/\r\n?/g, "\n").split("\n").map((line) => line.trimEnd()).join("\n").replace(/\n+$/, "")

export const outputsMatch = (actual: string, expected: string): boolean =>
  normalizeOutput(actual) === normalizeOutput(expected)

const DETAIL_CHARS = 300

const clip = (text: string): string => text.length <= DETAIL_CHARS ? text : `${text.slice(0, DETAIL_CHARS)}…`

const lastLine = (text: string): string => {
  const lines = text.trimEnd().split("\n")
  return lines[lines.length - 1] ?? ""
}

// RLIMIT_AS makes allocations fail, which CPython reports as MemoryError (or, inside C code, as a failed malloc).
const MEMORY_FAILURE = /\bMemoryError\b|Cannot allocate memory|std::bad_alloc/

/** Maps one run to a verdict; the order matters, as a killed program also has a bad exit status. */
export const classifyRun = (
  outcome: RunOutcome,
  expected: string,
  limits: RunLimits
): { readonly verdict: VerdictKind; readonly detail?: string } => {
  if (outcome.ending === "output-limit") {
    return { verdict: "output-limit", detail: `more than ${limits.outputBytes} bytes of output` }
  }
  if (outcome.ending === "wall-timeout") {
    return { verdict: "time-limit", detail: `wall clock over ${limits.wallMs} ms` }
  }
  if (outcome.signal === "SIGXCPU" || (outcome.signal === "SIGKILL" && outcome.seconds >= limits.cpuSeconds)) {
    return { verdict: "time-limit", detail: `CPU time over ${limits.cpuSeconds} s` }
  }
  if (outcome.exitCode !== 0) {
    if (MEMORY_FAILURE.test(outcome.stderr)) {
      return { verdict: "memory-limit", detail: clip(lastLine(outcome.stderr)) }
    }
    const status = outcome.signal !== null ? `signal ${outcome.signal}` : `exit ${String(outcome.exitCode)}`
    const message = lastLine(outcome.stderr)
    return { verdict: "runtime-error", detail: clip(message === "" ? status : `${status}: ${message}`) }
  }
  if (!outputsMatch(outcome.stdout, expected)) {
    return {
      verdict: "wrong-answer",
      detail: clip(`expected ${JSON.stringify(normalizeOutput(expected))}, got ${JSON.stringify(normalizeOutput(outcome.stdout))}`)
    }
  }
  return { verdict: "passed" }
}

const resolvePython = (python: string): Effect.Effect<string, EvaluatorSetupError> =>
  Effect.sync(() =>
    spawnSync(python, ["-c", "import sys; print(sys.executable)"], { encoding: "utf8", timeout: 10_000 })
  ).pipe(
    Effect.flatMap((result) => {
      const path = result.stdout?.trim() ?? ""
      return result.status === 0 && path !== ""
        ? Effect.succeed(path)
        : Effect.fail(
          new EvaluatorSetupError({
            message: `cannot run ${python}: ${result.error?.message ?? (result.stderr?.trim() || "no output")}`
          })
        )
    })
  )

const SCRIPT_NAME = "solution.py"

/** Gives every folder below dir (not following links) owner rwx, so a program cannot make its leftovers unremovable. */
const makeRemovable = async (dir: string): Promise<void> => {
  await chmod(dir, 0o700).catch(() => undefined)
  const entries = await readdir(dir).catch(() => [])
  for (const name of entries) {
    const path = join(dir, name)
    const stat = await lstat(path).catch(() => undefined)
    if (stat?.isDirectory()) await makeRemovable(path)
  }
}

const removeWorkdir = async (dir: string): Promise<void> => {
  try {
    await rm(dir, { recursive: true, force: true })
  } catch {
    // Folders the program left without write or search permission (chmod 0) stop rm; as its owner we can undo that.
    await makeRemovable(dir)
    await rm(dir, { recursive: true, force: true })
  }
}

const withWorkdir = <A, E>(use: (dir: string) => Effect.Effect<A, E>): Effect.Effect<A, E | WorkdirError> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: () => mkdtemp(join(tmpdir(), "canopy-eval-")),
      catch: (cause) => new WorkdirError({ message: `cannot create working folder: ${String(cause)}` })
    }),
    use,
    // A folder that still cannot be removed is not worth failing an evaluation over, but it is worth a word.
    (dir) =>
      Effect.tryPromise(() => removeWorkdir(dir)).pipe(
        Effect.catch((error) => Effect.logWarning(`cannot remove working folder ${dir}: ${String(error.cause)}`))
      )
  )

/**
 * Resolves the interpreter and probes the isolation once, then evaluates
 * samples against those settings. Isolation is recorded on the evaluator so a
 * run can report what it actually applied.
 */
export const makeEvaluator = (options: EvaluatorOptions = {}): Effect.Effect<Evaluator, EvaluatorSetupError> =>
  Effect.gen(function*() {
    const python = yield* resolvePython(options.python ?? "python3")
    const isolation = options.isolate === false ? NO_ISOLATION : yield* detectIsolation(python)
    const limits: RunLimits = { ...DEFAULT_LIMITS, ...options.limits }
    const stopOnFirstFailure = options.stopOnFirstFailure ?? true
    const concurrency = options.concurrency ?? 2

    const evaluate = (problem: Problem, program: string): Effect.Effect<SampleEvaluation, EvaluationError> =>
      withWorkdir((cwd) =>
        Effect.gen(function*() {
          yield* Effect.tryPromise({
            try: () => writeFile(join(cwd, SCRIPT_NAME), program),
            catch: (cause) => new WorkdirError({ message: `cannot write program: ${String(cause)}` })
          })
          const verdicts: Array<TestVerdict> = []
          for (const [index, test] of problem.tests.entries()) {
            const outcome = yield* runProgram({ python, isolation, limits, cwd, scriptName: SCRIPT_NAME, stdin: test.input })
            const { verdict, detail } = classifyRun(outcome, test.output, limits)
            verdicts.push(
              detail === undefined
                ? { test: index, verdict, seconds: outcome.seconds }
                : { test: index, verdict, seconds: outcome.seconds, detail }
            )
            if (verdict !== "passed" && stopOnFirstFailure) break
          }
          return { passed: verdicts.length === problem.tests.length && verdicts.every((v) => v.verdict === "passed"), verdicts }
        })
      )

    const evaluateAll = (items: ReadonlyArray<EvaluationItem>) =>
      Effect.forEach(items, (item) => evaluate(item.problem, item.program), { concurrency })

    return { python, isolation, limits, evaluate, evaluateAll }
  })
