/**
 * `canopy demo`: the sampling pipeline end to end in about a minute on a
 * quiet two-core machine with the software adapter — a few built-in problems
 * under the few-shot prompt, the synthetic tiny model, and all three decoding
 * modes compared over repeated rounds.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { noTuneFlag, positiveInt, schedulerFlag, weightDtypeFlag } from "./flags.ts"

/**
 * Sized on SwiftShader (2 cores): a round of the three modes costs about 30
 * CPU-seconds, the start and the warm-ups some 15 more, about 105 in all:
 * a minute or a little more of wall time when both cores are free. Single-level
 * sharing prefills the few-shot prompt once per problem, so problems set its
 * prefill; samples per problem are what tree sharing amortizes the prefix
 * over. The built-in few-shot prompt (about 620 byte tokens against 100–150
 * per problem) is long enough for that to show.
 */
export const DEMO = { problems: 3, samplesPerProblem: 6, maxTokens: 10, temperature: 0.8, seed: 0, repeats: 3 } as const

const flags = {
  out: Flag.String("out").pipe(Flag.withDescription("output folder (default: canopy-out/<timestamp>)"), Flag.optional),
  repeats: positiveInt("repeats", DEMO.repeats, "timed rounds of the three modes (medians and ranges are reported)"),
  quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no progress output"), Flag.withDefault(false)),
  scheduler: schedulerFlag,
  dtype: weightDtypeFlag,
  noTune: noTuneFlag
}

export type DemoFlags = Command.Command.Config.Infer<typeof flags>

export const demoCommand = Command.make("demo", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/demo.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Run the sampling pipeline on built-in problems with a synthetic model and compare decoding modes"))
