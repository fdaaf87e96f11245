/**
 * `canopy bench plan`: how long planLevels takes for a sampling workload's
 * tree (few-shot prefix → problems → samples), so planning can be compared
 * with a GPU step.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intFlag, positiveInt } from "../flags.ts"

const flags = {
  prefix: intFlag("prefix", 2000, "few-shot prefix tokens (level 0)"),
  problems: intFlag("problems", 8, "problems under the prefix (level 1)"),
  problemTokens: intFlag("problem-tokens", 300, "tokens per problem statement"),
  samples: intFlag("samples", 128, "live samples per problem (level 2)"),
  sampleTokens: intFlag("sample-tokens", 100, "tokens decoded per sample so far"),
  blockSize: intFlag("block-size", 16, "tokens per KV block"),
  iterations: intFlag("iterations", 2000, "plans timed per round"),
  repeats: positiveInt("repeats", 3, "timed rounds (the median of their medians is reported, with their range)"),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print the figures as JSON"), Flag.withDefault(false))
}

export type BenchPlanFlags = Command.Command.Config.Infer<typeof flags>

export const benchPlanCommand = Command.make("plan", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/plan.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Time planLevels on a few-shot → problems → samples tree (CPU only)"))
