/**
 * `canopy demo`: the sampling pipeline end to end in about a minute on a
 * software adapter — a few built-in problems under the few-shot prompt, the
 * synthetic tiny model, and all three decoding modes compared.
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { BUILTIN_PROBLEMS } from "../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../pipeline/prompt.ts"
import { defaultOutDir, runAndSummarize } from "./sample.ts"

/**
 * Sized on SwiftShader (2 cores), where the three modes take about 35 s of
 * sampling in all. Single-level sharing prefills the few-shot prompt once per
 * problem, so problems set its prefill; samples per problem are what tree
 * sharing amortizes the prefix over. The built-in few-shot prompt (about 620
 * byte tokens against 100–150 per problem) is long enough for that to show.
 */
export const DEMO = { problems: 4, samplesPerProblem: 12, maxTokens: 20, temperature: 0.8, seed: 0 } as const

const CLOSING = [
  "",
  "The synthetic tiny model has random weights: its text is meaningless, and only the timings and the plumbing are real.",
  "For real samples, point --model at a Hugging Face Llama-family folder (config.json, *.safetensors, tokenizer.json):",
  "  pnpm canopy sample --model /path/to/folder --evaluate",
  "and add --compare to time the three decoding modes on that model."
]

export const demoCommand = Command.make(
  "demo",
  {
    out: Flag.String("out").pipe(Flag.withDescription("output folder (default: canopy-out/<timestamp>)"), Flag.optional),
    quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no progress output"), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function*() {
      const problems = BUILTIN_PROBLEMS.slice(0, DEMO.problems)
      yield* Console.log(
        `Sampling ${DEMO.samplesPerProblem} solutions to each of ${problems.length} built-in problems under a ` +
          `${FEW_SHOT_PROMPT.length}-character few-shot prompt, three ways.`
      )
      yield* runAndSummarize("synthetic:tiny", {
        problems,
        fewShot: FEW_SHOT_PROMPT,
        samplesPerProblem: DEMO.samplesPerProblem,
        sampling: { temperature: DEMO.temperature, seed: DEMO.seed, maxTokens: DEMO.maxTokens },
        outDir: Option.getOrElse(flags.out, defaultOutDir),
        evaluate: false,
        compare: true,
        progress: flags.quiet ? "silent" : "auto",
        title: "Canopy demo"
      })
      yield* Console.log(CLOSING.join("\n"))
    })
).pipe(Command.withDescription("Run the sampling pipeline on built-in problems with a synthetic model and compare decoding modes"))
