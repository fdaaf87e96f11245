/**
 * `canopy demo`: the sampling pipeline end to end in about a minute on a
 * quiet two-core machine with the software adapter — a few built-in problems
 * under the few-shot prompt, the synthetic tiny model, and all three decoding
 * modes compared over repeated rounds.
 */
import { availableParallelism, loadavg } from "node:os"
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { BUILTIN_PROBLEMS } from "../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../pipeline/prompt.ts"
import { runPipeline } from "../sampling/pipeline.ts"
import { modelStack } from "../sampling/stack.ts"
import { summaryLines } from "../sampling/summary.ts"
import { positiveInt } from "./flags.ts"
import { prepareOutDir } from "./outDir.ts"
import { defaultOutDir } from "./sample.ts"

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

const CLOSING = [
  "",
  "The synthetic tiny model has random weights: its text is meaningless, and only the timings and the plumbing are real.",
  "For real samples, point --model at a Hugging Face Llama-family folder (config.json, *.safetensors, tokenizer.json):",
  "  pnpm canopy sample --model /path/to/folder --evaluate",
  "and add --compare to time the three decoding modes on that model."
]

/** What the run's time depends on, said before it starts: the adapter, the cores, and how busy they are. */
export const timeNote = (software: boolean, cores: number, load: number): string =>
  software
    ? `The software adapter computes on the CPU: ${cores} core${cores === 1 ? "" : "s"} here, load average ${load.toFixed(1)}. ` +
      `The demo takes about a minute on 2 idle cores; other work on them stretches it (several minutes at a load of 4 or more), ` +
      `and the progress line estimates the rest once every mode has run once.`
    : "A hardware adapter: the demo takes seconds, mostly setup."

export const demoCommand = Command.make(
  "demo",
  {
    out: Flag.String("out").pipe(Flag.withDescription("output folder (default: canopy-out/<timestamp>)"), Flag.optional),
    repeats: positiveInt("repeats", DEMO.repeats, "timed rounds of the three modes (medians and ranges are reported)"),
    quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no progress output"), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function*() {
      // The output folder is checked before the GPU and the model are acquired.
      const outDir = yield* prepareOutDir(Option.getOrElse(flags.out, defaultOutDir))
      yield* Effect.gen(function*() {
        const problems = BUILTIN_PROBLEMS.slice(0, DEMO.problems)
        const gpu = yield* Gpu
        yield* Console.log(
          `Sampling ${DEMO.samplesPerProblem} solutions (at most ${DEMO.maxTokens} tokens) to each of ${problems.length} built-in problems ` +
            `under a ${FEW_SHOT_PROMPT.length}-character few-shot prompt, three ways: each mode once untimed to warm up, ` +
            `then ${flags.repeats} timed round${flags.repeats === 1 ? "" : "s"} of all three, in rotating order.`
        )
        yield* Console.log(`adapter: ${adapterName(gpu)}`)
        yield* Console.log(timeNote(gpu.adapter.software, availableParallelism(), loadavg()[0] ?? 0))
        const result = yield* runPipeline({
          problems,
          fewShot: FEW_SHOT_PROMPT,
          samplesPerProblem: DEMO.samplesPerProblem,
          sampling: { temperature: DEMO.temperature, seed: DEMO.seed, maxTokens: DEMO.maxTokens },
          outDir,
          evaluate: false,
          compare: true,
          repeats: flags.repeats,
          progress: flags.quiet ? "silent" : "auto",
          title: "Canopy demo"
        })
        yield* Console.log(["", ...summaryLines(result)].join("\n"))
        yield* Console.log(CLOSING.join("\n"))
      }).pipe(Effect.provide(modelStack("synthetic:tiny")))
    })
).pipe(Command.withDescription("Run the sampling pipeline on built-in problems with a synthetic model and compare decoding modes"))
