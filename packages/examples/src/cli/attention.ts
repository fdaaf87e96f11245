/**
 * `canopy attention`: the attention oracle. One JSON case on standard input,
 * the result on standard output (see DESIGN.md, "The attention oracle").
 * A stable contract: anyone can check the GPU path against their own reference.
 */
import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { answerCase, parseOracleInput } from "../oracle/answer.ts"

const readStdin = (): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    process.stdin.on("data", (c: Buffer) => chunks.push(c))
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    process.stdin.on("error", reject)
  })

export const attentionCommand = Command.make("attention", {}, () =>
  Effect.gen(function*() {
    const text = yield* Effect.promise(readStdin)
    const c = yield* Effect.try({ try: () => parseOracleInput(text), catch: (e) => e })
    const result = yield* Effect.tryPromise({ try: () => answerCase(c), catch: (e) => e })
    yield* Console.log(JSON.stringify(result))
  })
).pipe(
  Command.withDescription(
    "The attention oracle: one JSON case on stdin ({heads, kvHeads, headDim, method?, nodes, queries}), {out, lse, adapter} on stdout"
  )
)
