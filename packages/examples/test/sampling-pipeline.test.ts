/**
 * The sampling pipeline on the synthetic tiny model: 2 problems × 2 samples,
 * compared three ways over two rounds and evaluated; a single-mode run and
 * its charts; the evaluation path alone with a known-good completion; and the
 * comparison's wording and progress, from made-up figures.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Writable } from "node:stream"
import type { Gpu, Model } from "@canopy/runtime"
import { Effect, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { makeEvaluator } from "../src/pipeline/evaluate.ts"
import { FEW_SHOT_PROMPT } from "../src/pipeline/prompt.ts"
import { MODE_NAMES, PREFILL_CHART_FILE, THROUGHPUT_CHART_FILE } from "../src/pipeline/report.ts"
import { type ModeRun, type PipelineResult, roundOrder, runPipeline, scoreSamples } from "../src/sampling/pipeline.ts"
import { createRoundProgress, secondsLeft } from "../src/sampling/roundProgress.ts"
import { modelStack } from "../src/sampling/stack.ts"
import { summaryLines } from "../src/sampling/summary.ts"

const problems = BUILTIN_PROBLEMS.slice(0, 2)
// The few-shot prompt's first 200 characters: still a prefix all problems share, for less prefill on a software adapter.
const fewShot = FEW_SHOT_PROMPT.slice(0, 200)
let gpuRuntime: ManagedRuntime.ManagedRuntime<Gpu | Model, unknown>
let dir: string
let result: PipelineResult

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "canopy-sampling-"))
  gpuRuntime = ManagedRuntime.make(modelStack("synthetic:tiny"))
  result = await gpuRuntime.runPromise(runPipeline({
    problems,
    fewShot,
    samplesPerProblem: 2,
    sampling: { temperature: 0.8, seed: 3, maxTokens: 8 },
    outDir: dir,
    evaluate: true,
    compare: true,
    repeats: 2,
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

  it("compares three modes on fresh engines over the rounds asked for: same tokens, tree sharing prefills least", () => {
    expect(result.modes.map((m) => m.mode.name)).toEqual([MODE_NAMES.tree, MODE_NAMES.baseline, MODE_NAMES.singleLevel])
    expect(result.repeats).toBe(2)
    for (const m of result.modes) {
      expect(m.rounds).toHaveLength(2)
      expect(m.seconds.n).toBe(2)
      // every round decodes the same work: the same tokens
      expect(m.rounds.map((r) => [r.prefillTokens, r.generatedTokens])).toEqual([
        [m.stats.prefillTokens, m.stats.generatedTokens],
        [m.stats.prefillTokens, m.stats.generatedTokens]
      ])
      expect(m.stats.totalSeconds).toBeCloseTo((m.rounds[0]!.totalSeconds + m.rounds[1]!.totalSeconds) / 2, 10)
    }
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
    // the same samples in both rounds of every mode, as the seeds make them
    for (const m of result.modes) expect(m.agreeing).toBe(4)
    const lines = summaryLines(result)
    expect(lines.some((l) => l.startsWith(`${MODE_NAMES.tree} vs ${MODE_NAMES.baseline}: overall `))).toBe(true)
    expect(lines.filter((l) => l.endsWith("4/4 samples identical in all 2 rounds"))).toHaveLength(2)
    expect(lines).toContain(
      "timing:  2 timed rounds per mode after an untimed warm-up of each, the order rotating; medians, with the range over the rounds in brackets"
    )
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
    expect(result.chartPaths).toEqual([join(dir, THROUGHPUT_CHART_FILE)])
    expect(existsSync(result.reportPath)).toBe(true)
    for (const chart of result.chartPaths) expect(existsSync(chart)).toBe(true)
    const markdown = readFileSync(result.reportPath, "utf8")
    for (const name of Object.values(MODE_NAMES)) expect(markdown).toContain(`| ${name} |`)
    expect(markdown).toContain("## pass@k")
    expect(markdown).toContain("fresh engine")
    expect(markdown).toContain("- Timing: 2 timed rounds per mode after an untimed warm-up of each")
  })

  it("charts a run without --compare: tokens/s over the run and the prefill sharing saved", async () => {
    const single = mkdtempSync(join(tmpdir(), "canopy-single-"))
    try {
      const one = await gpuRuntime.runPromise(runPipeline({
        problems: problems.slice(0, 1),
        fewShot,
        samplesPerProblem: 2,
        sampling: { temperature: 0.8, seed: 3, maxTokens: 4 },
        outDir: single,
        evaluate: false,
        compare: false,
        repeats: 5,
        progress: "silent"
      }))
      // repeats only apply to comparisons
      expect(one.repeats).toBe(1)
      expect(one.modes.map((m) => m.rounds.length)).toEqual([1])
      expect(one.chartPaths).toEqual([join(single, THROUGHPUT_CHART_FILE), join(single, PREFILL_CHART_FILE)])
      expect(one.report.timeline!.at(-1)![1]).toBe(one.modes[0]!.stats.generatedTokens)
      expect(readFileSync(one.chartPaths[0]!, "utf8")).toContain("Tokens/s over the run")
      const stats = one.modes[0]!.stats
      expect(readFileSync(one.chartPaths[1]!, "utf8")).toContain(`${stats.prefillTokens.toLocaleString("en-US")} (`)
    } finally {
      rmSync(single, { recursive: true, force: true })
    }
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

describe("comparison wording and progress", () => {
  /** The comparison above with made-up round times: hydragen+tree slower than single-level. */
  const timed = (times: ReadonlyArray<ReadonlyArray<number>>): PipelineResult => ({
    ...result,
    modes: result.modes.map((m, i): ModeRun => ({
      ...m,
      rounds: m.rounds.map((r, j) => ({ ...r, totalSeconds: times[i]![j]!, decodeSeconds: times[i]![j]! / 2 }))
    }))
  })

  it("words a slowdown as slower, with the range over the rounds", () => {
    const lines = summaryLines(timed([[2, 2.4], [4, 4.4], [1.72, 2]]))
    // against the baseline: 4/2 and 4.4/2.4; against single-level: 1.72/2 and 2/2.4
    expect(lines.find((l) => l.startsWith(`${MODE_NAMES.tree} vs ${MODE_NAMES.baseline}:`))).toContain(
      "overall 1.92× faster (1.83–2.00× over 2 rounds); decoding 1.92× faster (1.83–2.00× over 2 rounds)"
    )
    const single = lines.find((l) => l.startsWith(`${MODE_NAMES.tree} vs ${MODE_NAMES.singleLevel}:`))!
    expect(single).toContain("overall 0.85× (1.18× slower; 0.83–0.86× over 2 rounds)")
    expect(single).not.toContain("faster")
  })

  it("rotates the order of the modes from round to round", () => {
    expect([0, 1, 2, 3].map((r) => roundOrder(["a", "b", "c"], r).join(""))).toEqual(["abc", "bca", "cab", "abc"])
  })

  it("counts rounds × modes × samples and estimates the rest from the first round", () => {
    expect(secondsLeft({ rounds: 3, modes: 2, samples: 4 }, [10, undefined], [1, 0])).toBeUndefined()
    // two rounds of each left (10 s and 20 s), 5 s of the current 20 s run spent
    expect(secondsLeft({ rounds: 3, modes: 2, samples: 4 }, [10, 20], [1, 1], { modeIndex: 1, elapsed: 5 })).toBe(55)

    const chunks: Array<string> = []
    const stream = new Writable({ write: (chunk: Buffer, _e, done) => void (chunks.push(chunk.toString()), done()) }) as unknown as NodeJS.WriteStream
    let clock = 0
    const progress = createRoundProgress({ rounds: 2, modes: 2, samples: 1 }, { mode: "lines", stream, now: () => clock })
    progress.warmUp(0, "a")
    progress.warmUp(1, "b")
    clock = 2_000
    for (const [round, order] of [[0, [0, 1]], [1, [1, 0]]] as const) {
      for (const mode of order) {
        progress.runStart(round, mode, mode === 0 ? "a" : "b")
        clock += (mode + 1) * 10_000
        progress.sampleDone()
        progress.runEnd(round, mode, (mode + 1) * 10)
      }
    }
    progress.stop()
    expect(chunks.join("").split("\n")).toEqual([
      "warm-up 1/2: a, untimed (compiles pipelines, fills caches)",
      "warm-up 2/2: b, untimed (compiles pipelines, fills caches)",
      "round 1/2 · a (1/2) · samples 0/4 · 2 s elapsed · time left known after round 1",
      "round 1/2 · b (2/2) · samples 1/4 · 12 s elapsed · time left known after round 1",
      "round 2/2 · b (1/2) · samples 2/4 · 32 s elapsed · about 30 s left",
      "round 2/2 · a (2/2) · samples 3/4 · 52 s elapsed · about 10 s left",
      "timed 2 rounds × 2 modes × 1 samples; 62 s with the warm-ups",
      ""
    ])
  })
})
