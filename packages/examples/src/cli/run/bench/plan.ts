/**
 * What `canopy bench plan` runs (the command and its help are in ../../bench/plan.ts).
 */
import { availableParallelism, cpus, loadavg } from "node:os"
import { benchPlan, type BenchPlanResult } from "@canopy/tree-cache"
import { Console, Effect } from "effect"
import { spreadOf } from "../../../bench/figures.ts"
import type { BenchPlanFlags } from "../../bench/plan.ts"

/** What the figure depends on, so that one from another machine or a busier moment is not taken for a change in the code. */
export const planDependsOn = (cpu: string, cores: number, load: number): ReadonlyArray<string> => [
  `The figure depends on this CPU (${cpu}, ${cores} core${cores === 1 ? "" : "s"}), on its load while measuring ` +
  `(load average ${load.toFixed(1)}: other processes take turns on the same cores) and on the tree's sizes above.`,
  "Compare figures from the same machine at the same load; a range wider than a few percent means the machine was busy."
]

export const formatPlanResult = (r: BenchPlanResult): ReadonlyArray<string> => {
  const rounds = spreadOf(r.roundMedianUs)
  const rows: Array<[string, string]> = [
    ["live sequences", String(r.sequences)],
    ["levels", String(r.levels)],
    ["planned nodes", String(r.nodes)],
    ["partial states", String(r.partials)],
    ["block indices", String(r.blocks)],
    ["plans timed", `${r.rounds} rounds × ${r.iterations}, after a warm-up`],
    ["median µs/plan", `${r.medianUs.toFixed(1)} (rounds' medians ${rounds.min.toFixed(1)}–${rounds.max.toFixed(1)})`],
    ["p10–p90 µs/plan", `${r.p10Us.toFixed(1)}–${r.p90Us.toFixed(1)}`],
    ["min µs/plan", r.minUs.toFixed(1)],
    ["refreshed µs/plan", `${r.refresh.medianUs.toFixed(1)} (rounds' medians ${spreadOf(r.refresh.roundMedianUs).min.toFixed(1)}–${spreadOf(r.refresh.roundMedianUs).max.toFixed(1)}, ` +
      `p10–p90 ${r.refresh.p10Us.toFixed(1)}–${r.refresh.p90Us.toFixed(1)}): a decode step's plan of the same samples, the last plan's structure kept, ` +
      `in alternation: ${(r.medianUs / r.refresh.medianUs).toFixed(2)}× faster`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`)
}

export const run = (flags: BenchPlanFlags) =>
  Effect.gen(function*() {
    const r = benchPlan({
      prefixTokens: flags.prefix,
      problems: flags.problems,
      problemTokens: flags.problemTokens,
      samplesPerProblem: flags.samples,
      sampleTokens: flags.sampleTokens,
      blockSize: flags.blockSize,
      iterations: flags.iterations,
      rounds: flags.repeats
    })
    const cpu = cpus()[0]?.model.trim() ?? "unknown CPU"
    const cores = availableParallelism()
    const load = loadavg()[0] ?? 0
    if (flags.json) return yield* Console.log(JSON.stringify({ ...r, cpu, cores, loadAverage: load }, null, 2))
    for (const line of formatPlanResult(r)) yield* Console.log(line)
    yield* Console.log("")
    for (const line of planDependsOn(cpu, cores, load)) yield* Console.log(line)
  })
