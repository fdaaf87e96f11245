/**
 * What `canopy bench queue` runs (the command and its help are in ../../bench/queue.ts).
 */
import { availableParallelism } from "node:os"
import { writeFile } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { benchQueue, type QueueBenchResult } from "../../../bench/queueBench.ts"
import { ratioPhrase, valueWithRange } from "../../../bench/figures.ts"
import { modelKeyOf } from "../../../distributed/modelKey.ts"
import { BUILTIN_PROBLEMS } from "../../../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT, renderProblemPrompt, STOP_SEQUENCES } from "../../../pipeline/prompt.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchQueueFlags } from "../../bench/queue.ts"
import { OutputDirError } from "../../errors.ts"

export const formatQueueBench = (r: QueueBenchResult, repeats: number): Array<string> => {
  const rows = r.results.map((w) => [
    String(w.workers),
    valueWithRange(w.seconds, 1, " s"),
    valueWithRange(w.samplesPerSecond, 2),
    valueWithRange(w.tokensPerSecond, 1),
    w === r.results[0] ? "—" : ratioPhrase(w.speedUp, { rounds: false })
  ])
  const header = ["workers", "seconds", "samples/s", "tokens/s", `vs ${r.results[0]?.workers ?? 1} worker(s)`]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  const cores = availableParallelism()
  return [
    `${r.samples} samples in ${r.jobs} jobs, ${r.tokens} tokens; medians of ${repeats} rounds (the range in brackets), each after an untimed warm-up`,
    line(header),
    ...rows.map(line),
    "",
    `Every run wrote each (problem, sample) once, and every run drew the same samples as the first, whatever its workers.`,
    `Workers share this machine's ${cores} core${cores === 1 ? "" : "s"}${cores <= 2 ? ": on a machine this small the point is that it works and loses nothing, not the scaling figure" : ""}; ` +
    "on separate GPU machines each worker brings its own."
  ]
}

export const run = (flags: BenchQueueFlags) =>
  Effect.gen(function*() {
    const status = progressLine()
    const problems = BUILTIN_PROBLEMS.slice(0, flags.problems)
    const result = yield* Effect.tryPromise({
      try: () =>
        benchQueue({
          workerCounts: flags.workers,
          model: flags.model,
          concurrency: flags.concurrency,
          repeats: flags.repeats,
          redisServer: flags.redisServer,
          canopy: [process.execPath, process.argv[1]!],
          spec: {
            model: modelKeyOf(flags.model, undefined),
            kvDtype: flags.kvDtype,
            prefix: FEW_SHOT_PROMPT,
            problems: problems.map((p) => ({ id: p.id, prompt: renderProblemPrompt(p) })),
            samplesPerProblem: flags.samples,
            blockSize: flags.block,
            sampling: { temperature: 0.8, seed: 0, maxTokens: flags.maxTokens, stop: STOP_SEQUENCES }
          },
          onProgress: (text) => status.update(text)
        }),
      catch: (e) => e
    }).pipe(Effect.ensuring(Effect.sync(() => status.end())))
    for (const line of formatQueueBench(result, flags.repeats)) yield* Console.log(line)
    if (Option.isSome(flags.json)) {
      const path = flags.json.value
      yield* Effect.tryPromise({ try: () => writeFile(path, JSON.stringify(result, null, 2)), catch: (e) => new OutputDirError({ path, problem: String(e) }) })
    }
  })
