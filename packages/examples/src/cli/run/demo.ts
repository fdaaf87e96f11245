/**
 * What `canopy demo` runs (the command and its help are in ../demo.ts).
 */
import { availableParallelism, loadavg } from "node:os"
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { BUILTIN_PROBLEMS } from "../../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../../pipeline/prompt.ts"
import { runPipeline } from "../../sampling/pipeline.ts"
import { modelStack } from "../../sampling/stack.ts"
import { summaryLines } from "../../sampling/summary.ts"
import { DEMO, type DemoFlags } from "../demo.ts"
import { prepareOutDir } from "../outDir.ts"
import { defaultOutDir } from "../sample.ts"
import { tuneSetting } from "./tune.ts"

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

export const run = (flags: DemoFlags) =>
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
        scheduling: flags.scheduler,
        engine: { tune: tuneSetting(flags.noTune) },
        progress: flags.quiet ? "silent" : "auto",
        title: "Canopy demo"
      })
      yield* Console.log(["", ...summaryLines(result)].join("\n"))
      yield* Console.log(CLOSING.join("\n"))
    }).pipe(Effect.provide(modelStack("synthetic:tiny", 0, Option.getOrUndefined(flags.dtype))))
  })
