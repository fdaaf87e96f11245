/**
 * What `canopy attention` runs (the command and its help are in ../attention.ts):
 * the case read from standard input, answered, the answer on standard output.
 */
import { Console, Effect } from "effect"
import { answerCase, parseOracleInput } from "../../oracle/answer.ts"

const readStdin = (): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    process.stdin.on("data", (c: Buffer) => chunks.push(c))
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    process.stdin.on("error", reject)
  })

export const run = (): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const text = yield* Effect.promise(readStdin)
    const c = yield* Effect.try({ try: () => parseOracleInput(text), catch: (e) => e })
    const result = yield* Effect.tryPromise({ try: () => answerCase(c), catch: (e) => e })
    yield* Console.log(JSON.stringify(result))
  })
