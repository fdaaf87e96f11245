/**
 * The sampling pipeline on the synthetic tiny model: 2 problems × 2 samples,
 * compared three ways and evaluated, then the evaluation path alone with a
 * known-good completion.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Gpu, Model } from "@canopy/runtime"
import { Effect, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { makeEvaluator } from "../src/pipeline/evaluate.ts"
import { FEW_SHOT_PROMPT } from "../src/pipeline/prompt.ts"
import { MODE_NAMES } from "../src/pipeline/report.ts"
import { type PipelineResult, runPipeline, scoreSamples } from "../src/sampling/pipeline.ts"
import { modelStack } from "../src/sampling/stack.ts"
import { summaryLines } from "../src/sampling/summary.ts"

const problems = BUILTIN_PROBLEMS.slice(0, 2)
let gpuRuntime: ManagedRuntime.ManagedRuntime<Gpu | Model, unknown>
let dir: string
let result: PipelineResult

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "canopy-sampling-"))
  gpuRuntime = ManagedRuntime.make(modelStack("synthetic:tiny"))
  result = await gpuRuntime.runPromise(runPipeline({
    problems,
    fewShot: FEW_SHOT_PROMPT,
    samplesPerProblem: 2,
    sampling: { temperature: 0.8, seed: 3, maxTokens: 8 },
    outDir: dir,
    evaluate: true,
    compare: true,
    progress: "silent"
  }))
})

afterAll(async () => {
  await gpuRuntime?.dispose()
  rmSync(dir, { recursive: true, force: true })
})

describe("sampling pipeline", () => {
  it("writes every sample as a JSONL line with its problem, index, text, token count and finish reason", () => {
    const lines = readFileSync(join(dir, "samples.jsonl"), "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => [l["problem_id"], l["sample"]])).toEqual([
      [problems[0]!.id, 0], [problems[0]!.id, 1], [problems[1]!.id, 0], [problems[1]!.id, 1]
    ])
    for (const line of lines) {
      expect(typeof line["text"]).toBe("string")
      expect(line["tokens"]).toBeGreaterThanOrEqual(0)
      expect(line["tokens"]).toBeLessThanOrEqual(8)
      expect(["stop", "eos", "length"]).toContain(line["finish_reason"])
      expect(typeof line["passed"]).toBe("boolean")
    }
    expect(lines).toEqual(result.records)
  })

  it("compares three modes on fresh engines: same tokens, tree sharing prefills least", () => {
    expect(result.modes.map((m) => m.mode.name)).toEqual([MODE_NAMES.tree, MODE_NAMES.baseline, MODE_NAMES.singleLevel])
    const [tree, baseline, single] = result.modes.map((m) => m.stats)
    // A fresh engine per mode: the baseline, run after the tree mode, still prefills the whole tree itself.
    expect(tree!.prefillTokens).toBeGreaterThan(0)
    expect(baseline!.prefillTokens).toBe(tree!.prefillTokens)
    expect(single!.prefillTokens).toBeGreaterThan(tree!.prefillTokens)
    for (const m of result.modes) {
      expect(m.stats.samples).toBe(4)
      expect(m.agreeing).toBeGreaterThanOrEqual(0)
      expect(m.agreeing).toBeLessThanOrEqual(4)
    }
    expect(result.modes[0]!.agreeing).toBe(4)
    expect(summaryLines(result).some((l) => l.startsWith(`${MODE_NAMES.tree} vs ${MODE_NAMES.baseline}:`))).toBe(true)
  })

  it("reports verdicts consistent with the samples", () => {
    const pass = result.passAtK!
    expect(pass.perProblem.map((p) => [p.problemId, p.n])).toEqual(problems.map((p) => [p.id, 2]))
    for (const p of pass.perProblem) {
      const mine = result.records.filter((r) => r.problem_id === p.problemId)
      expect(p.c).toBe(mine.filter((r) => r.passed).length)
      const tests = problems.find((q) => q.id === p.problemId)!.tests.length
      for (const r of mine) {
        // Evaluation stops at the first failing test: every verdict but the last passed.
        expect(r.verdicts!.length).toBeGreaterThanOrEqual(1)
        expect(r.verdicts!.length).toBeLessThanOrEqual(tests)
        expect(r.verdicts!.slice(0, -1).every((v) => v.verdict === "passed")).toBe(true)
        expect(r.passed).toBe(r.verdicts!.length === tests && r.verdicts!.every((v) => v.verdict === "passed"))
      }
    }
  })

  it("writes the report with all three modes and its chart", () => {
    expect(existsSync(result.reportPath)).toBe(true)
    for (const chart of result.chartPaths) expect(existsSync(chart)).toBe(true)
    const markdown = readFileSync(result.reportPath, "utf8")
    for (const name of Object.values(MODE_NAMES)) expect(markdown).toContain(`| ${name} |`)
    expect(markdown).toContain("## pass@k")
    expect(markdown).toContain("fresh engine")
  })

  it("passes a known-good completion through the same evaluation", async () => {
    const sumTwo = BUILTIN_PROBLEMS.find((p) => p.id === "canopy-sum-two")!
    // What a model writes after the prompt's open fence, cut before the closing fence by the stop sequences.
    const good = "a, b = map(int, input().split())\nprint(a + b)\n"
    const wrong = "print(0)\n"
    const scored = await Effect.runPromise(
      Effect.flatMap(makeEvaluator(), (evaluator) =>
        scoreSamples(evaluator, [{ problem: sumTwo, texts: [good, wrong] }]))
    )
    expect(scored.evaluations.map((e) => e.passed)).toEqual([true, false])
    expect(scored.passAtK.perProblem[0]).toMatchObject({ problemId: sumTwo.id, n: 2, c: 1 })
    expect(scored.passAtK.overall[0]).toBeCloseTo(0.5)
  })
})
