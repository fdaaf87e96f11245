/**
 * `canopy status [RUN]`: a run's progress over every worker (samples,
 * problems, each worker's share and rate, what failed), or, without a run,
 * the latest runs and the workers alive.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { queueFlag } from "../distributed/flags.ts"
import { positiveInt } from "./flags.ts"

const flags = {
  run: Argument.String("run").pipe(Argument.withDescription("the run id that canopy sample --queue printed (default: list the latest runs)"), Argument.optional),
  queue: queueFlag,
  limit: positiveInt("limit", 20, "without RUN: how many of the latest runs to list", 10_000),
  json: Flag.Boolean("json").pipe(Flag.withDescription("the progress as JSON"), Flag.withDefault(false))
}

export type StatusFlags = Command.Command.Config.Infer<typeof flags>

export const statusCommand = Command.make("status", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/status.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Show a distributed run's progress over all its workers, or list the latest runs and the live workers"))
