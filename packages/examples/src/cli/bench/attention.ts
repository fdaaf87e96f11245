/**
 * `canopy bench attention`: Hydragen tree attention against per-sequence paged
 * decoding over a sweep of batch × shared prefix × suffix, with the roofline.
 */
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { readFile } from "node:fs/promises"
import { disagreements, runAttentionBench, writeAttentionReport } from "../../bench/attentionBench.ts"
import { chartPathFor, formatAttentionTable } from "../../bench/attentionReport.ts"
import { gridPoints } from "../../bench/attentionWorkload.ts"
import { shapeProblems } from "../../bench/benchShape.ts"
import { parseRooflineJson } from "../../bench/rooflineReport.ts"
import { InvalidFlag } from "../errors.ts"
import { intFlag, intListFlag } from "../flags.ts"

const file = (name: string, description: string) => Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

export const benchAttentionCommand = Command.make(
  "attention",
  {
    batch: intListFlag("batch", "8,32,64", 1, "sequences sharing the prefix"),
    prefix: intListFlag("prefix", "256,1024", 1, "shared prefix tokens"),
    suffix: intListFlag("suffix", "32", 0, "tokens of each sequence's own suffix"),
    heads: intFlag("heads", 8, "query heads"),
    kvHeads: intFlag("kv-heads", 1, "KV heads (heads must be a multiple)"),
    headDim: intFlag("head-dim", 64, "head dimension (a multiple of 8)"),
    blockSize: intFlag("block-size", 16, "tokens per KV block"),
    suffixKernel: Flag.Literals("suffix-kernel", ["decode", "level"]).pipe(
      Flag.withDescription("where Hydragen attends each sequence's own suffix: the decode kernel, or the level kernel with one-row tiles"),
      Flag.withDefault("decode")
    ),
    repeats: intFlag("repeats", 7, "alternating pairs of runs timed per point, at most, after a warm-up (the median and range are reported)"),
    roofline: file("roofline", "roofline JSON from `canopy bench roofline --json` (measured now when absent)"),
    json: file("json", "write the report as JSON here (and the chart beside it, .svg)"),
    svg: file("svg", "write the speed-up chart here")
  },
  (flags) =>
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
      if (wrong > 0) return yield* Effect.fail(new Error(`hydragen and the baseline disagree at ${wrong} of ${report.points.length} points (see the agree column)`))
    })
).pipe(
  Command.withDescription("Hydragen tree attention vs per-sequence paged decoding: batch × prefix × suffix sweep with roofline"),
  Command.provide(Gpu.layer())
)
