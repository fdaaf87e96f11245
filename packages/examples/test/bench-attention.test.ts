import { openGpu, type GpuHandle, type RooflineFigures } from "@canopy/kernels"
import { XMLParser, XMLValidator } from "fast-xml-parser"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runAttentionBench } from "../src/bench/attentionBench.ts"
import { formatAttentionTable, formatPointLine, speedupChartSvg, TIMING_NOTE } from "../src/bench/attentionReport.ts"
import type { PointResult } from "../src/bench/attentionSweep.ts"
import { spreadOf } from "../src/bench/figures.ts"
import { attentionWork } from "../src/bench/attentionCost.ts"
import { gridPoints, sharedPrefixWorkload } from "../src/bench/attentionWorkload.ts"
import { shapeProblems } from "../src/bench/benchShape.ts"
import { parseIntList } from "../src/bench/lists.ts"
import { parseRooflineJson } from "../src/bench/rooflineReport.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

// A fixed roofline: measuring one would only slow the test down.
const ROOFLINE: RooflineFigures = {
  bandwidth: { bytes: 2 ** 20, ms: 1, gbPerSecond: 1, timing: "wall-clock" },
  matmul: { n: 64, ms: 1, gflops: 1, variant: "gpu", timing: "wall-clock" }
}
const SHAPE = { heads: 4, kvHeads: 2, headDim: 16, blockSize: 16 }

describe("bench attention", () => {
  it("sweeps a tiny grid into a complete report and chart", async () => {
    const report = await runAttentionBench(gpu, {
      shape: SHAPE,
      points: gridPoints([2, 4], [64], [8]),
      roofline: ROOFLINE,
      repeats: 3,
      progress: false
    })
    expect(report.skipped).toEqual([])
    expect(report.points.map((p) => p.batch)).toEqual([2, 4])
    // the JSON form is what downstream tools read
    const json = JSON.parse(JSON.stringify(report)) as typeof report
    expect(json.adapter.length).toBeGreaterThan(0)
    expect(json.shape).toEqual(SHAPE)
    expect(parseRooflineJson(JSON.stringify(json), "report")).toEqual(ROOFLINE)
    const fields = [
      "batch", "prefix", "suffix", "hydragenMs", "baselineMs", "speedup", "hydragenGflops", "baselineGflops",
      "hydragenGBps", "baselineGBps", "hydragenRoofline", "baselineRoofline"
    ] as const
    for (const p of json.points) {
      for (const field of fields) {
        expect(Number.isFinite(p[field]), field).toBe(true)
        expect(p[field], field).toBeGreaterThan(0)
      }
      expect(["timestamp-query", "wall-clock"]).toContain(p.timing)
      // the median of the per-pair ratios, within their range
      expect(p.pairs).toBe(3)
      expect(p.speedupRange.n).toBe(3)
      expect(p.speedup).toBe(p.speedupRange.median)
      expect(p.speedupRange.min).toBeLessThanOrEqual(p.speedup)
      expect(p.speedupRange.max).toBeGreaterThanOrEqual(p.speedup)
      expect(p.hydragenMs).toBe(p.hydragenRange.median)
      expect(p.baselineRange.min).toBeLessThanOrEqual(p.baselineMs)
      expect(p.agree).toBe(true)
      expect(p.maxRelDiff).toBeLessThan(1e-3)
    }
    const table = formatAttentionTable(report)
    // how the figures were taken, the header, a row per point
    expect(table).toHaveLength(4)
    expect(table[0]).toBe(TIMING_NOTE)
    expect(table[1]).toContain("hydragen speed-up (range)")

    const svg = speedupChartSvg(report)
    expect(XMLValidator.validate(svg)).toBe(true)
    const doc = new XMLParser({ ignoreAttributes: false }).parse(svg) as { svg: { g: Array<{ "@_class": string; "@_data-name"?: string }> } }
    expect(doc.svg.g.filter((g) => g["@_class"] === "series").map((g) => g["@_data-name"])).toEqual(["prefix 64"])
    expect(svg).toContain("1× = same speed; below it Hydragen is slower")
    expect(svg).toContain("Medians of 3 rounds per point (methods in rotating order) after a warm-up")
  })
})

describe("bench attention with several level kernels", () => {
  it("times each beside the first in the same rounds, checked against it, with columns of its own", async () => {
    const report = await runAttentionBench(gpu, {
      shape: SHAPE, points: gridPoints([4], [64], [8]), roofline: ROOFLINE, repeats: 3, progress: false, levelVariants: ["flash2", "stacked"]
    })
    const [p] = report.points
    expect(p!.levelVariant).toBe("flash2")
    expect(p!.variants).toHaveLength(1)
    const stacked = p!.variants![0]!
    expect(stacked.levelVariant).toBe("stacked")
    expect(stacked.agree).toBe(true)
    expect(stacked.maxRelDiff).toBeLessThan(1e-3)
    // one ratio per round: the variant ran in every round the first did
    expect(stacked.speedup.n).toBe(p!.pairs)
    expect(stacked.ms).toBe(stacked.range.median)
    const table = formatAttentionTable(report)
    expect(table[1]).toMatch(/^hydragen columns: the flash2 level kernel/)
    expect(table[2]).toContain("stacked vs flash2 (range)")
    expect(formatPointLine(p!)).toContain(`; stacked ${stacked.ms.toFixed(3)} ms, `)
  })
})

describe("bench attention pieces", () => {
  it("shares exactly the prefix between the leaves", () => {
    const { plan, poolBlocks } = sharedPrefixWorkload({ batch: 3, prefix: 40, suffix: 5 }, 16)
    expect(plan.numSequences).toBe(3)
    expect(plan.levels.map((l) => l.nodeIds.length)).toEqual([1, 3])
    expect([...plan.seqLength]).toEqual([45, 45, 45])
    // 3 prefix blocks, then one fresh block per leaf (each starts mid-block)
    expect(poolBlocks).toBe(6)
  })

  it("counts the prefix once for hydragen and once per sequence for the baseline", () => {
    const w = attentionWork({ heads: 8, kvHeads: 1, headDim: 64, blockSize: 16 }, { batch: 4, prefix: 100, suffix: 10 })
    const tokenKv = 2 * 64 * 4
    const io = 4 * 8 * (2 * 64 + 1) * 4
    expect(w.flops).toBe(4 * 4 * 8 * 64 * 110)
    expect(w.hydragenBytes).toBe((100 + 4 * 10) * tokenKv + io)
    expect(w.baselineBytes).toBe(4 * 110 * tokenKv + io)
  })

  it("words a point where hydragen lost as slower", () => {
    const slower = { batch: 2, prefix: 64, suffix: 8, hydragenMs: 1.2, baselineMs: 1, pairs: 3, speedupRange: spreadOf([0.8, 0.86, 0.9]) }
    expect(formatPointLine(slower as PointResult)).toBe(
      "batch 2 prefix 64 suffix 8: hydragen 1.200 ms, baseline 1.000 ms, hydragen 0.86× (1.16× slower; 0.80–0.90×) over 3 rounds"
    )
  })

  it("rejects bad flags with a message", () => {
    expect(parseIntList("8, 32,64", 1)).toEqual([8, 32, 64])
    expect(() => parseIntList("8,x", 1)).toThrow(/"x"/)
    expect(() => parseIntList("0", 1)).toThrow(/≥ 1/)
    expect(shapeProblems({ ...SHAPE, heads: 6, kvHeads: 4 })).toHaveLength(1)
    expect(shapeProblems({ ...SHAPE, headDim: 12 })[0]).toMatch(/multiple of 8/)
    expect(() => parseRooflineJson("{}", "r.json")).toThrow(/gbPerSecond/)
  })
})
