/**
 * The sampling pipeline as an Effect program: built-in problems under the
 * few-shot prompt, samples evaluated against each problem's tests, and a
 * report written to the output folder. `compare: true` would also time the
 * baseline and single-level modes on the same work (as `canopy demo` does).
 *
 *   node --conditions=@canopy/source --import tsx examples/sampling-pipeline.ts [out-dir] [model]
 */
import { BUILTIN_PROBLEMS, FEW_SHOT_PROMPT } from "@canopy/examples/pipeline"
import { modelStack, runPipeline, summaryLines } from "@canopy/examples/sampling"
import { Effect } from "effect"

const program = runPipeline({
  problems: BUILTIN_PROBLEMS.slice(0, 2),
  fewShot: FEW_SHOT_PROMPT,
  samplesPerProblem: 2,
  sampling: { temperature: 0.8, seed: 1, maxTokens: 8 },
  outDir: process.argv[2] ?? "canopy-out/example",
  evaluate: true,
  compare: false,
  progress: "silent"
}).pipe(Effect.provide(modelStack(process.argv[3] ?? "synthetic:tiny")))

const result = await Effect.runPromise(program)
console.log(summaryLines(result).join("\n"))
