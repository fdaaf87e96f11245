/**
 * `canopy bench plan`: how long planLevels takes for a sampling workload's
 * tree (few-shot prefix → problems → samples), so planning can be compared
 * with a GPU step.
 */
import { benchPlan } from "@canopy/tree-cache"
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intFlag } from "../flags.ts"

export const benchPlanCommand = Command.make(
  "plan",
  {
    prefix: intFlag("prefix", 2000, "few-shot prefix tokens (level 0)"),
    problems: intFlag("problems", 8, "problems under the prefix (level 1)"),
    problemTokens: intFlag("problem-tokens", 300, "tokens per problem statement"),
    samples: intFlag("samples", 128, "live samples per problem (level 2)"),
    sampleTokens: intFlag("sample-tokens", 100, "tokens decoded per sample so far"),
    blockSize: intFlag("block-size", 16, "tokens per KV block"),
    iterations: intFlag("iterations", 2000, "plans timed"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the figures as JSON"), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function*() {
      const r = benchPlan({
        prefixTokens: flags.prefix,
        problems: flags.problems,
        problemTokens: flags.problemTokens,
        samplesPerProblem: flags.samples,
        sampleTokens: flags.sampleTokens,
        blockSize: flags.blockSize,
        iterations: flags.iterations
      })
      if (flags.json) return yield* Console.log(JSON.stringify(r, null, 2))
      const rows: Array<[string, string]> = [
        ["live sequences", String(r.sequences)],
        ["levels", String(r.levels)],
        ["planned nodes", String(r.nodes)],
        ["partial states", String(r.partials)],
        ["block indices", String(r.blocks)],
        ["plans timed", String(r.iterations)],
        ["median µs/plan", r.medianUs.toFixed(1)],
        ["p90 µs/plan", r.p90Us.toFixed(1)],
        ["min µs/plan", r.minUs.toFixed(1)]
      ]
      const width = Math.max(...rows.map(([k]) => k.length))
      for (const [k, v] of rows) yield* Console.log(`${k.padEnd(width)}  ${v.padStart(8)}`)
    })
).pipe(Command.withDescription("Time planLevels on a few-shot → problems → samples tree (CPU only)"))
