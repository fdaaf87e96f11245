/**
 * What `canopy bench attention` runs (the command and its help are in ../../bench/attention.ts).
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { readFile } from "node:fs/promises"
import { disagreements, runAttentionBench, writeAttentionReport } from "../../../bench/attentionBench.ts"
import { chartPathFor, formatAttentionTable } from "../../../bench/attentionReport.ts"
import { gridPoints } from "../../../bench/attentionWorkload.ts"
import { shapeProblems } from "../../../bench/benchShape.ts"
import { parseRooflineJson } from "../../../bench/rooflineReport.ts"
import type { BenchAttentionFlags } from "../../bench/attention.ts"
import { InvalidFlag } from "../../errors.ts"

export const run = (flags: BenchAttentionFlags) =>
  Effect.gen(function*() {
    const shape = { heads: flags.heads, kvHeads: flags.kvHeads, headDim: flags.headDim, blockSize: flags.blockSize }
    const problems = shapeProblems(shape)
    if (problems.length > 0) return yield* Effect.fail(new InvalidFlag(problems.join("; ")))
    if (flags.repeats < 1) return yield* Effect.fail(new InvalidFlag(`--repeats must be positive, got ${flags.repeats}`))
    const rooflinePath = Option.getOrUndefined(flags.roofline)
    const roofline = rooflinePath === undefined ? undefined : yield* Effect.tryPromise({
      try: async () => parseRooflineJson(await readFile(rooflinePath, "utf8"), rooflinePath),
      catch: (e) => new InvalidFlag(`--roofline: ${e instanceof Error ? e.message : String(e)}`)
    })
    const gpu = yield* Gpu
    yield* Console.error(`adapter: ${adapterName(gpu)}`)
    const report = yield* Effect.tryPromise({
      try: () =>
        runAttentionBench(gpu, {
          shape,
          points: gridPoints(flags.batch, flags.prefix, flags.suffix),
          roofline,
          suffixKernel: flags.suffixKernel,
          levelVariants: flags.levelVariants,
          kvDtype: flags.kvDtype,
          repeats: flags.repeats
        }),
      // the shape passed the flag checks but not the device's limits
      catch: (e) => (e instanceof RangeError ? new InvalidFlag(e.message) : e)
    })
    const { bandwidth, matmul } = report.roofline
    yield* Console.log(`adapter ${report.adapter}; roofline ${bandwidth.gbPerSecond.toFixed(1)} GB/s, ${matmul.gflops.toFixed(1)} GFLOP/s f32`)
    for (const line of formatAttentionTable(report)) yield* Console.log(line)
    const json = Option.getOrUndefined(flags.json)
    const svg = Option.getOrUndefined(flags.svg) ?? (json === undefined ? undefined : chartPathFor(json))
    yield* Effect.tryPromise(() => writeAttentionReport(report, { json, svg }))
    for (const path of [json, svg]) if (path !== undefined) yield* Console.log(`wrote ${path}`)
    const wrong = disagreements(report)
    if (wrong > 0) {
      return yield* Effect.fail(new Error(`the methods or the KV dtypes disagree at ${wrong} of ${report.points.length} points (see the agree and f16 ≈ f32 columns)`))
    }
  }).pipe(Effect.provide(Gpu.layer()))
