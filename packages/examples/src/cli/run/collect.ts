/**
 * What `canopy collect` runs (the command and its help are in ../collect.ts).
 */
import { QueueClient } from "@canopy/queue"
import { Effect, Option } from "effect"
import { collectAndWrite } from "../../distributed/collectRun.ts"
import { readProblemsFile } from "../../pipeline/problems.ts"
import type { CollectFlags } from "../collect.ts"
import { prepareOutDir } from "../outDir.ts"

export const run = (flags: CollectFlags) =>
  Effect.gen(function*() {
    const problems = yield* Option.match(flags.problems, { onNone: () => Effect.succeed(undefined), onSome: readProblemsFile })
    const outDir = yield* prepareOutDir(flags.out)
    yield* collectAndWrite(flags.run, {
      outDir,
      evaluate: flags.evaluate,
      ...(problems !== undefined ? { problems } : {}),
      ...Option.match(flags.problems, { onNone: () => ({}), onSome: (problemsSource) => ({ problemsSource }) })
    })
  }).pipe(Effect.provide(QueueClient.layer(flags.queue)))
