/**
 * How the command line ends on an error: one line on standard error naming
 * what was wrong, and exit code 2 for bad input, 1 for everything else.
 */
import { Cause, Console, Data, Effect } from "effect"

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
  "EngineCapacityError",
  // the engine's: options, a KV cache or a prompt the command line was asked for that cannot be had (NonFiniteLogits is the model's fault: 1)
  "InvalidEngineOptions",
  "KvCacheOutOfMemory",
  "ContextTooLong",
  // the server's: a chat template file that cannot be read or parsed
  "ChatTemplateLoadError",
  "InputFileError",
  "OutputDirError",
  "SampleCountError",
  // the queue's: a URL, a run spec or a run id that is wrong (a queue that does not answer, or a failed run, is 1)
  "InvalidQueueUrl",
  "InvalidRunSpec",
  "RunNotFound"
])

/** A flag value the command cannot use. */
export class InvalidFlag extends Error {
  readonly _tag = "InvalidFlag"
}

/** A file a flag names that cannot be read, or does not hold what the flag takes. */
export class InputFileError extends Data.TaggedError("InputFileError")<{
  readonly flag: string
  readonly path: string
  readonly problem: string
}> {
  override get message(): string {
    return `--${this.flag} ${this.path}: ${this.problem}`
  }
}

/** The output folder cannot be created or written. */
export class OutputDirError extends Data.TaggedError("OutputDirError")<{
  readonly path: string
  readonly problem: string
}> {
  override get message(): string {
    return `--out ${this.path}: ${this.problem}`
  }
}

/** `--samples` per problem times the problems: more samples than one run may ask for. */
export class SampleCountError extends Data.TaggedError("SampleCountError")<{
  readonly samplesPerProblem: number
  readonly problems: number
  readonly limit: number
}> {
  override get message(): string {
    const total = this.samplesPerProblem * this.problems
    return `--samples ${this.samplesPerProblem} for each of ${this.problems} problems asks for ${total} samples; one run may ask for at most ${this.limit}`
  }
}

/** What an error thrown by Node says, without the "Error: " that String() puts before it. */
export const causeText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Tags whose message already names the flag or field, so the tag would only repeat it. */
const UNTAGGED = ["InvalidFlag", "InvalidAttentionCase", "InputFileError", "OutputDirError", "SampleCountError", "InvalidQueueUrl"]

const tagOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" ? e._tag : undefined

export const exitCodeOf = (e: unknown): number => (INPUT_ERRORS.has(tagOf(e) ?? "") || e instanceof RangeError ? 2 : 1)

/** The line the command line prints for an error, after "canopy: ". */
export const describeFailure = (e: unknown): string => {
  const tag = tagOf(e)
  const text = e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)
  // errors about a line of an input file say where it is
  const where = typeof e === "object" && e !== null && "source" in e && "line" in e ? `${String(e.source)}:${String(e.line)}: ` : ""
  const message = where + text
  return tag !== undefined && !UNTAGGED.includes(tag) ? `${tag}: ${message}` : message
}

/** Ends the program with the error's message and exit code instead of a stack trace. */
export const reportFailure = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  program.pipe(
    Effect.catchCause((cause) => {
      const error = Cause.squash(cause)
      // The CLI parser has already printed its own message for bad flags.
      const setExitCode = (code: number) => Effect.sync(() => void (process.exitCode = code))
      if (tagOf(error)?.startsWith("Cli") || tagOf(error) === "ShowHelp") return setExitCode(2)
      return Console.error(`canopy: ${describeFailure(error)}`).pipe(Effect.andThen(setExitCode(exitCodeOf(error))))
    })
  )
