/**
 * `canopy collect RUN`: a finished run's files, written as a local run
 * writes them (samples.jsonl, report.md and its charts, pass@k when the run
 * asked for evaluation or --evaluate does).
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { queueFlag } from "../distributed/flags.ts"

const flags = {
  run: Argument.String("run").pipe(Argument.withDescription("the run id that canopy sample --queue printed")),
  queue: queueFlag,
  out: Flag.String("out").pipe(Flag.withDescription("output folder")),
  evaluate: Flag.Boolean("evaluate").pipe(
    Flag.withDescription("run each sample on its problem's tests and report pass@k, whether or not the run asked to"),
    Flag.withDefault(false)
  ),
  problems: Flag.String("problems").pipe(
    Flag.withDescription("the problems file to evaluate on (default: the file the run was sampled from, or the built-in set)"),
    Flag.optional
  )
}

export type CollectFlags = Command.Command.Config.Infer<typeof flags>

export const collectCommand = Command.make("collect", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/collect.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Write a finished distributed run's samples, report and pass@k into a folder, as a local run does"))
