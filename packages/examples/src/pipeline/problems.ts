import { readFile } from "node:fs/promises"
import { Effect, Result, Schema } from "effect"

/** One stdin → stdout example. */
export interface TestCase {
  readonly input: string
  readonly output: string
}

export interface Problem {
  readonly id: string
  readonly question: string
  readonly tests: ReadonlyArray<TestCase>
}

export class ProblemLineError extends Schema.TaggedError<ProblemLineError>()("ProblemLineError", {
  source: Schema.String,
  line: Schema.Number,
  message: Schema.String
}) {}

export class ProblemFileError extends Schema.TaggedError<ProblemFileError>()("ProblemFileError", {
  path: Schema.String,
  message: Schema.String
}) {}

// APPS stores some expected outputs as a list of lines rather than one string.
const ExpectedOutput = Schema.Union([Schema.String, Schema.Array(Schema.String)])

const InputOutput = Schema.Struct({
  inputs: Schema.Array(Schema.String),
  outputs: Schema.Array(ExpectedOutput)
})

// Extra APPS fields (solutions, difficulty, url, ...) are ignored by Struct decoding.
const AppsRecord = Schema.Struct({
  problem_id: Schema.Union([Schema.String, Schema.Number]),
  question: Schema.String,
  input_output: Schema.Union([InputOutput, Schema.fromJsonString(InputOutput)])
})

const decodeRecord = Schema.decodeUnknownResult(Schema.fromJsonString(AppsRecord))

const lineError = (source: string, line: number, message: string) =>
  new ProblemLineError({ source, line, message })

/**
 * Parses APPS-style JSONL. Blank lines are skipped; the first bad line fails the
 * whole read, since a silently shortened problem set would skew pass@k.
 */
export const parseProblemsJsonl = (
  text: string,
  source = "<input>"
): Effect.Effect<ReadonlyArray<Problem>, ProblemLineError> =>
  Effect.gen(function*() {
    const problems: Array<Problem> = []
    const seen = new Set<string>()
    const lines = text.split("\n")
    for (let index = 0; index < lines.length; index++) {
      const raw = lines[index]?.trim() ?? ""
      if (raw === "") continue
      const lineNumber = index + 1
      const decoded = decodeRecord(raw)
      if (Result.isFailure(decoded)) {
        return yield* lineError(source, lineNumber, decoded.failure.message)
      }
      const record = decoded.success
      const { inputs, outputs } = record.input_output
      if (inputs.length !== outputs.length) {
        return yield* lineError(
          source,
          lineNumber,
          `input_output has ${inputs.length} inputs but ${outputs.length} outputs`
        )
      }
      if (inputs.length === 0) {
        return yield* lineError(source, lineNumber, "input_output has no tests")
      }
      const id = String(record.problem_id)
      if (seen.has(id)) return yield* lineError(source, lineNumber, `duplicate problem_id ${id}`)
      seen.add(id)
      problems.push({
        id,
        question: record.question,
        tests: inputs.map((input, i) => {
          const output = outputs[i] ?? ""
          return { input, output: typeof output === "string" ? output : output.join("\n") }
        })
      })
    }
    return problems
  })

/** What went wrong reading a file; String() of a Node error would add "Error: " before a message the tag already introduces. */
const causeMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/**
 * Reads APPS-style JSONL from a file. A file with no problems is an error: a
 * run over nothing would "succeed" and report pass@k over zero problems.
 */
export const readProblemsFile = (
  path: string
): Effect.Effect<ReadonlyArray<Problem>, ProblemLineError | ProblemFileError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) => new ProblemFileError({ path, message: causeMessage(cause) })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.flatMap(parseProblemsJsonl(text, path), (problems) => {
        if (problems.length > 0) return Effect.succeed(problems)
        const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0)
        const what = text.length === 0 ? "is empty" : `holds only blank lines (${lines})`
        return Effect.fail(new ProblemFileError({ path, message: `${path} ${what}: a problems file needs at least one problem, one APPS-style JSON record per line` }))
      })
    )
  )
