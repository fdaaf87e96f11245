/**
 * `bench step`'s decoding step, the engine's path (plan → attention prepare →
 * forward encode → submit), on a device that counts what it is asked for:
 * the counts the forward and the attention keep for themselves must be what
 * the device saw, step by step, and once the first step has made the bind
 * groups and grown the plan buffers, a step creates no bind group and no
 * buffer. Then the whole benchmark, small, and its report.
 */
import { countingDevice, countsSince, GpuWorkCounters, openGpu, sumCounts, type GpuHandle } from "@canopy/kernels"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RecordedCalls } from "../src/bench/recordedCalls.ts"
import { decodeStep, runStepBench } from "../src/bench/stepBench.ts"
import { buildStepTree, createStepStack, DecodeRows, MAX_STEP_BATCH, stepModelConfig } from "../src/bench/stepStack.ts"
import { formatStepTable, GOAL_HOST_MS, type StepReport } from "../src/bench/stepReport.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

describe("bench step", () => {
  it("a steady step creates no bind group or buffer, and the objects count what the device sees", async () => {
    const seen = new GpuWorkCounters()
    const device = countingDevice(gpu.device, seen)
    // 3 layers and 4 heads: the host work of the 13b layout per layer, at a fraction of the software adapter's time
    const config = stepModelConfig("codellama-13b", 3, 4)
    const steps = 4
    const stack = await createStepStack(device, config, 24, steps)
    try {
      for (const batch of [24, 9]) {
        const samples = buildStepTree(stack.kv, batch, config.vocabSize)
        const inputs = new DecodeRows(stack.kv, samples)
        for (let i = 0; i < steps; i++) {
          const before = seen.snapshot()
          const own = sumCounts([stack.forward.counters.snapshot(), stack.attention.counters.snapshot()])
          // the second step goes through the recording stand-ins, which must pass every call on
          const calls = i === 1 ? new RecordedCalls() : undefined
          const measured = await decodeStep(device, stack, samples, inputs, 0, calls)
          if (calls !== undefined) {
            expect(calls.dispatches).toBe(measured.counts.dispatches)
            const replayed = calls.replay(gpu.device)
            expect(replayed.cpuMs).toBeGreaterThanOrEqual(0)
            expect(replayed.wallMs).toBeGreaterThan(0)
          }
          expect(measured.counts).toEqual(countsSince(sumCounts([stack.forward.counters.snapshot(), stack.attention.counters.snapshot()]), own))
          // the device also saw the staging buffer that reads the sampled tokens back, after the step's submit
          const atDevice = countsSince(seen.snapshot(), before)
          expect({ ...measured.counts, buffers: measured.counts.buffers + 1 }, `batch ${batch}, step ${i + 1}`).toEqual(atDevice)
          expect(measured.counts.dispatches).toBeGreaterThan(3 * config.numLayers)
          if (i > 0) expect({ bindGroups: measured.counts.bindGroups, buffers: measured.counts.buffers }).toEqual({ bindGroups: 0, buffers: 0 })
        }
        for (const seq of samples) stack.kv.tree.release(seq)
        stack.kv.tree.evict(stack.kv.numBlocks)
      }
    } finally {
      stack.destroy()
    }
  })

  it("sweeps batches into a report whose figures are consistent", async () => {
    const points = await runStepBench(gpu.device, { preset: "codellama-7b", layers: 2, heads: 2, batches: [1, 16], warmup: 1, steps: 3, separateMerge: true })
    expect(points.map((p) => [p.batch, p.layers])).toEqual([[1, 2], [16, 2]])
    for (const p of points) {
      expect(p.hostMsSteps).toHaveLength(3)
      expect(p.hostMs.min).toBeLessThanOrEqual(p.hostMsPerStep)
      expect(p.hostMsPerStep).toBeLessThanOrEqual(p.hostMs.max)
      expect(p.bindGroupsPerStep).toBe(0)
      expect(p.buffersPerStep).toBe(0)
      expect(p.dispatchesPerStep).toBeGreaterThan(0)
      expect(p.callsAloneMs?.n).toBe(5)
      expect(p.hostBackToBackMs.n).toBe(10)
      expect(p.freshPlanBackToBackMs.n).toBe(10)
      expect(p.hostBackToBackMs.min).toBeGreaterThan(0)
      expect(p.callsAfterGpuMs).toBeGreaterThanOrEqual(0)
      expect(p.submitAloneMs?.n).toBe(5)
      expect(p.submitAloneMs!.min).toBeGreaterThanOrEqual(0)
      // batch 1 has no shared node to merge with; at 16 (two samples a problem) every sample ends on its own leaf, and the fused merge saves a dispatch a layer
      expect(p.separateMerge?.hostBackToBackMs.n).toBe(10)
      expect(p.separateMerge?.dispatchesPerStep).toBe(p.dispatchesPerStep + (p.batch === 1 ? 0 : p.layers))
      // the forward's inputs alone: tokens, positions, slots (2 words), logit rows, 8 words of sampling parameters per row, two counts
      expect(p.bytesWrittenPerStep).toBeGreaterThan(4 * 13 * p.batch)
    }
    // the first point's first step made the bind groups
    expect(points[0]!.firstStep.bindGroups).toBeGreaterThan(0)
    const report: StepReport = {
      adapter: "test adapter",
      model: { preset: "codellama-7b", layers: 2, heads: 2, kvHeads: 2, headDim: 8, hidden: 32 },
      tree: { prefixTokens: 64, problems: 8, problemTokens: 32, sampleTokens: 1 },
      warmup: 1,
      steps: 3,
      goalHostMs: GOAL_HOST_MS,
      points
    }
    const table = formatStepTable(report)
    // the header lines, the table, a line per point comparing the plans, and one comparing the merges
    expect(table).toHaveLength(9)
    expect(table[5]).toMatch(/^batch 1: back to back, the plan refreshed .* ms, built from nothing .* ms, in alternation: [\d.]+× the step's host time$/)
    expect(table[8]).toMatch(/^batch 16: back to back, the merge fused .* ms \(\d+ dispatches\), as a pass of its own .* ms \(\d+\), in alternation: [\d.]+× the fused host time$/)
    expect(table[3]!.trim().split(/\s+/)[0]).toBe("1")
    expect(JSON.parse(JSON.stringify(report)).points[1].batch).toBe(16)
  })

  it("refuses a batch its tree cannot hold before building anything", async () => {
    await expect(runStepBench(gpu.device, { preset: "codellama-7b", batches: [8, MAX_STEP_BATCH + 1], warmup: 1, steps: 1 }))
      .rejects.toThrow(new RangeError(`--batch: ${MAX_STEP_BATCH + 1} samples; the benchmark's tree holds at most ${MAX_STEP_BATCH}`))
  })
})
