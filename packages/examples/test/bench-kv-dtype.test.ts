/**
 * f16 KV against f32 in the benchmarks: the attention sweep's pools sized by
 * the dtype they hold and written with the same values, the f32 reference
 * timed in the same rotating rounds and checked to agree, the decode
 * benchmark's f32 engine beside the f16 one, and the tables that print it all.
 */
import { chooseLevelTile, openGpu, type GpuHandle, type RooflineFigures } from "@canopy/kernels"
import { loadModel, PRESETS, TreeEngine } from "@canopy/runtime"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { attentionWork } from "../src/bench/attentionCost.ts"
import { runAttentionBench } from "../src/bench/attentionBench.ts"
import { F32_NOTE, formatAttentionTable, TIMING_NOTE } from "../src/bench/attentionReport.ts"
import { F16_AGREEMENT_TOLERANCE } from "../src/bench/attentionSweep.ts"
import { gridPoints } from "../src/bench/attentionWorkload.ts"
import { benchPoolLayout } from "../src/bench/benchPools.ts"
import { type DecodeReport, decodeVariants, formatDecodeTable, formerKernels, rateRatio, runDecodeBench } from "../src/bench/decodeBench.ts"
import { timeRotating } from "../src/bench/rotatingTiming.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const ROOFLINE: RooflineFigures = {
  bandwidth: { bytes: 2 ** 20, ms: 1, gbPerSecond: 1, timing: "wall-clock" },
  matmul: { n: 64, ms: 1, gflops: 1, variant: "gpu", timing: "wall-clock" }
}

describe("the attention sweep with f16 KV", () => {
  it("times f16 and f32 pools in the same rounds, the two agreeing, with f16's speed-up per method", async () => {
    const shape = { heads: 4, kvHeads: 2, headDim: 16, blockSize: 16 }
    const report = await runAttentionBench(gpu, { shape, points: gridPoints([2, 4], [64], [8]), roofline: ROOFLINE, repeats: 3, progress: false, kvDtype: "f16" })
    expect(report.kvDtype).toBe("f16")
    expect(report.skipped).toEqual([])
    for (const p of report.points) {
      expect(p.kvDtype).toBe("f16")
      expect([p.agree, p.f32?.agree]).toEqual([true, true])
      // f16 rounds K and V, so the outputs differ, but by less than the f16 tolerance
      expect(p.f32!.maxRelDiff).toBeGreaterThan(0)
      expect(p.f32!.maxRelDiff).toBeLessThan(F16_AGREEMENT_TOLERANCE)
      for (const s of [p.f32!.hydragenRange, p.f32!.baselineRange, p.f32!.hydragenF16Speedup, p.f32!.baselineF16Speedup]) {
        expect(s.n).toBe(3)
        expect(s.min).toBeLessThanOrEqual(s.median)
        expect(s.max).toBeGreaterThanOrEqual(s.median)
      }
      // the roofline counts K and V at 2 bytes
      expect(p.hydragenBytes).toBe(attentionWork(shape, p, "f16").hydragenBytes)
    }
    const table = formatAttentionTable(report)
    expect(table.slice(0, 2)).toEqual([TIMING_NOTE, F32_NOTE])
    expect(table[2]).toContain("hydragen f16 vs f32 (range)")
    expect(table).toHaveLength(5)
  })

  it("sizes each dtype's pools by its element size: f16 pools half of f32's, sharded only when one binding is too small", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }), fc.constantFrom(8, 64, 128), fc.integer({ min: 1, max: 1 << 16 }), fc.integer({ min: 12, max: 31 }),
        (kvHeads, headDim, tokens, log2Binding) => {
          const shape = { heads: kvHeads, kvHeads, headDim, blockSize: 16 }
          const binding = 2 ** log2Binding
          const f16 = benchPoolLayout(shape, tokens, "f16", binding)
          const f32 = benchPoolLayout(shape, tokens, "f32", binding)
          // one shard: tokens × KV heads × head dim elements; more: each shard a whole number of 256-byte units
          const shardBytes = (bytes: number, shards: number) => Math.ceil((tokens * (kvHeads / shards) * headDim * bytes) / 256) * 256
          for (const [layout, bytes] of [[f16, 2], [f32, 4]] as const) {
            const fewest = Array.from({ length: kvHeads }, (_, i) => i + 1).find((s) => kvHeads % s === 0 && shardBytes(bytes, s) <= binding)
            if (fewest === undefined) expect(layout).toHaveProperty("reason")
            else {
              expect(layout).toEqual({ kvDtype: bytes === 2 ? "f16" : "f32", shards: fewest, bytes: fewest === 1 ? tokens * kvHeads * headDim * bytes : fewest * shardBytes(bytes, fewest) })
            }
          }
          if ("shards" in f16 && "shards" in f32 && f16.shards === 1 && f32.shards === 1) expect(2 * f16.bytes).toBe(f32.bytes)
        }
      ),
      { numRuns: 300 }
    )
  })

  it("rotates the order of the workloads from round to round", async () => {
    const order: Array<string> = []
    const workload = (name: string) => () => {
      order.push(name)
    }
    const timing = await timeRotating(gpu.device, ["a", "b", "c"].map(workload), { warmup: 1, repeats: 3 })
    // round 1: each warmed up once, then timed; rounds 2 and 3 start one further on
    expect(order.join("")).toBe("aabbcc" + "bca" + "cab")
    expect(timing.rounds).toBe(3)
    expect(timing.samples.map((s) => s.length)).toEqual([3, 3, 3])
  })
})

describe("the decode benchmark with f16 KV", () => {
  it("decodes every mode on the f16 engine, Hydragen and the baseline on an f32 one and on the former kernels, in the same rounds", async () => {
    const model = await loadModel(gpu.device, { kind: "synthetic", model: PRESETS.tiny, seed: 0 })
    const engines = new Map<string, TreeEngine>()
    try {
      for (const kvDtype of ["f16", "f32"] as const) engines.set(kvDtype, await TreeEngine.create(gpu.device, model, { maxBatch: 4, kvDtype }))
      const pinned = formerKernels(gpu.device, PRESETS.tiny.headDim)
      const former = await TreeEngine.create(gpu.device, model, { maxBatch: 4, kvDtype: "f16", kernels: pinned })
      engines.set("former", former)
      expect(pinned.levelTile).toEqual(chooseLevelTile(PRESETS.tiny.headDim, gpu.device.limits, "stacked"))
      expect(former.tuning.levelTile.value).toEqual(pinned.levelTile)
      expect(former.tuning.matmul.choice).toEqual(pinned.matmul)
      expect(decodeVariants("f32")).toEqual([
        { mode: "hydragen", kvDtype: "f32", kernels: "tuned" }, { mode: "baseline", kvDtype: "f32", kernels: "tuned" },
        { mode: "none", kvDtype: "f32", kernels: "tuned" }
      ])
      const variants = decodeVariants("f16", true)
      const names = ["hydragen f16", "baseline f16", "none f16", "hydragen f32", "baseline f32", "hydragen f16 former", "baseline f16 former"]
      const nameOf = (v: { mode: string; kvDtype: string; kernels?: string }) => `${v.mode} ${v.kvDtype}${v.kernels === "former" ? " former" : ""}`
      expect(variants.map(nameOf)).toEqual(names)
      const used: Array<string> = []
      const points = await runDecodeBench((v) => {
        const key = v.kernels === "former" ? "former" : v.kvDtype
        used.push(key)
        return engines.get(key)!
      }, { batches: [2], prefixes: [16], tokens: 3, variants, repeats: 2 })
      expect(new Set(used)).toEqual(new Set(["f16", "f32", "former"]))
      expect(points.map((p) => `${nameOf(p)} ${p.rounds.length}`)).toEqual(names.map((n) => `${n} 2`))
      for (const p of points) expect(p.tokensPerSecond).toBeGreaterThan(0)
      const report: DecodeReport = { adapter: "test", model: "tiny", kvDtype: "f16", tokens: 3, repeats: 2, points }
      const table = formatDecodeTable(report)
      expect(table[1]).toContain("also decoded on an f32 KV cache in the same rounds")
      expect(table[2]).toContain("also decoded on the former kernels")
      const header = table[3]!.trim().split(/\s{2,}/)
      expect(header).toEqual([
        "batch", "prefix", "hydragen tok/s", "baseline tok/s", "ceiling tok/s", "hydragen/baseline", "hydragen/ceiling",
        "f32 hydragen tok/s", "f32 baseline tok/s", "hydragen f16 vs f32", "baseline f16 vs f32", "hydragen tuned vs former", "baseline tuned vs former"
      ])
      expect(table).toHaveLength(5)
      // the ratio cells are the medians of the per-round ratios of the two engines' points
      const row = table[4]!.trim().split(/\s{2,}/)
      const hydragen = points.find((p) => nameOf(p) === "hydragen f16")!
      const hydragenFormer = points.find((p) => nameOf(p) === "hydragen f16 former")!
      expect(row[11]).toContain(rateRatio(hydragen, hydragenFormer)!.median.toFixed(2))
    } finally {
      for (const engine of engines.values()) engine.destroy()
      model.weights.destroy()
    }
  })
})
