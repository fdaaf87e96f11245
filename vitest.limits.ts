/**
 * Every wall-clock limit of the test run, scaled by one setting:
 * CANOPY_TEST_TIMEOUT_SCALE (default 10). The limits are there to end a hang,
 * never to judge speed: the software adapter (SwiftShader) on a 2-core machine
 * that other work is loading runs the suite ten times slower than on a quiet
 * one, and a test that fails only because the machine is busy is a broken test.
 * Lower it (e.g. 1) to find a hang sooner on a quiet machine; raise it on a
 * machine slower still.
 *
 * Read by the vitest configs (per-test and per-hook limits, the run's
 * deadline) and handed to the tests through `inject("timeoutScale")` for the
 * limits of the child processes they start.
 */

const parseScale = (raw: string | undefined): number => {
  if (raw === undefined || raw.trim() === "") return 10
  const scale = Number(raw)
  if (!(Number.isFinite(scale) && scale > 0)) {
    throw new RangeError(`CANOPY_TEST_TIMEOUT_SCALE must be a positive number, got ${JSON.stringify(raw)}`)
  }
  return scale
}

export const TIMEOUT_SCALE = parseScale(process.env["CANOPY_TEST_TIMEOUT_SCALE"])

export const scaled = (ms: number): number => Math.round(ms * TIMEOUT_SCALE)

/**
 * One test or hook. The slowest test takes about a minute on a quiet machine
 * (most of it compiling pipelines); at the default scale a test may run twenty
 * minutes before it counts as hung.
 */
export const TEST_TIMEOUT_MS = scaled(120_000)

/**
 * The whole run, a backstop for a hang no per-test limit can see (a worker
 * blocked in synchronous code). A quiet run takes about 3 minutes; at the
 * default scale the deadline is an hour, past the slowest loaded run seen and
 * inside CI's 90 minutes with room for setup and the type check.
 */
export const RUN_DEADLINE_MS = scaled(360_000)
