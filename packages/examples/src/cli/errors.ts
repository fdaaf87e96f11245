/**
 * How the command line ends on an error: one line on standard error naming
 * what was wrong, and exit code 2 for bad input, 1 for everything else.
 */
import { Cause, Console, Effect } from "effect"

/** Errors that mean the input was wrong (exit code 2). */
const INPUT_ERRORS = new Set([
  "InvalidAttentionCase",
  "InvalidPromptTree",
  "InvalidSampling",
  "InvalidFlag",
  "ModelConfigError",
  "ModelFileError",
  "SafetensorsError",
  "UnsupportedDtype",
  "TensorShapeMismatch",
  "TokenizerError",
  "ProblemLineError",
  "ProblemFileError",
  "EngineCapacityError"
])

/** A flag value the command cannot use. */
export class InvalidFlag extends Error {
  readonly _tag = "InvalidFlag"
}

const tagOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" ? e._tag : undefined

export const exitCodeOf = (e: unknown): number => (INPUT_ERRORS.has(tagOf(e) ?? "") || e instanceof RangeError ? 2 : 1)

const describe = (e: unknown): string => {
  const tag = tagOf(e)
  const text = e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)
  // errors about a line of an input file say where it is
  const where = typeof e === "object" && e !== null && "source" in e && "line" in e ? `${String(e.source)}:${String(e.line)}: ` : ""
  const message = where + text
  return tag !== undefined && !["InvalidFlag", "InvalidAttentionCase"].includes(tag) ? `${tag}: ${message}` : message
}

/** Ends the program with the error's message and exit code instead of a stack trace. */
export const reportFailure = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  program.pipe(
    Effect.catchCause((cause) => {
      const error = Cause.squash(cause)
      // The CLI parser has already printed its own message for bad flags.
      const setExitCode = (code: number) => Effect.sync(() => void (process.exitCode = code))
      if (tagOf(error)?.startsWith("Cli") || tagOf(error) === "ShowHelp") return setExitCode(2)
      return Console.error(`canopy: ${describe(error)}`).pipe(Effect.andThen(setExitCode(exitCodeOf(error))))
    })
  )
