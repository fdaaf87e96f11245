/**
 * `bench schedule`: the workload (seeded lengths, one node per sample under
 * its problem), the check that both schedulings give the same completions,
 * and the command run small on the software adapter, its JSON checked
 * against what the drawn lengths imply: waves decode wave by wave, each as
 * long as its longest sample, and continuous batching leaves fewer places idle,
 * overlapped or stepwise.
 * And `--scheduler`, the flag that picks one of the two for a command's run.
 */
import type { Completion, GenerateRequest, GenerateResult, TreeEngine } from "@canopy/runtime"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import { completionsDiffer, runScheduleBench, sampleLengths, ScheduleMismatch, type ScheduleReport, scheduleTree } from "../src/bench/schedule.ts"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT, renderProblemPrompt } from "../src/pipeline/prompt.ts"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "canopy-bench-schedule-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const canopy = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    // spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
    timeout: scaled(120_000)
  })

const completion = (path: ReadonlyArray<number>, tokens: ReadonlyArray<number>): Completion => ({
  path, sample: 0, tokens, text: "", finishReason: "length"
})

describe("the workload", () => {
  it("draws each length in range, the same for the same seed", () => {
    fc.assert(
      fc.property(fc.nat(300), fc.integer({ min: 1, max: 64 }), fc.nat(64), fc.nat(0xffffffff), (count, min, extra, seed) => {
        const lengths = sampleLengths(count, min, min + extra, seed)
        expect(lengths).toHaveLength(count)
        for (const m of lengths) {
          expect(Number.isInteger(m)).toBe(true)
          expect(m).toBeGreaterThanOrEqual(min)
          expect(m).toBeLessThanOrEqual(min + extra)
        }
        expect(sampleLengths(count, min, min + extra, seed)).toEqual(lengths)
      })
    )
  })

  it("spreads the lengths over the range, not onto a few values", () => {
    const lengths = sampleLengths(2000, 4, 64, 0)
    expect(new Set(lengths).size).toBe(61)
    expect(Math.min(...lengths)).toBe(4)
    expect(Math.max(...lengths)).toBe(64)
  })

  it("puts each sample in a node of its own, with its length, under its problem, adding no text", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: BUILTIN_PROBLEMS.length }), fc.integer({ min: 1, max: 9 }), fc.nat(), (p, n, seed) => {
        const problems = BUILTIN_PROBLEMS.slice(0, p)
        const lengths = sampleLengths(p * n, 1, 50, seed)
        const tree = scheduleTree({ fewShot: FEW_SHOT_PROMPT, problems, samplesPerProblem: n, minTokens: 1, maxTokens: 50, seed }, lengths)
        expect(tree.text).toBe(FEW_SHOT_PROMPT)
        expect(tree.samples).toBeUndefined()
        expect(tree.children!.map((c) => c.text)).toEqual(problems.map((q) => renderProblemPrompt(q)))
        const leaves = tree.children!.flatMap((c) => c.children!)
        expect(leaves).toEqual(lengths.map((maxTokens) => ({ text: "", samples: 1, sampling: { maxTokens } })))
        for (const c of tree.children!) expect(c.children).toHaveLength(n)
      })
    )
  })
})

describe("comparing completions", () => {
  const runs = fc.array(fc.record({ path: fc.array(fc.nat(3), { minLength: 1, maxLength: 3 }), tokens: fc.array(fc.nat(259), { maxLength: 8 }) }), {
    minLength: 1,
    maxLength: 6
  })

  it("finds no difference between equal runs, and names the sample and step of a changed token", () => {
    fc.assert(
      fc.property(runs, fc.nat(), fc.nat(), (list, which, at) => {
        const reference = list.map((c) => completion(c.path, c.tokens))
        expect(completionsDiffer(reference, reference.map((c) => ({ ...c, tokens: [...c.tokens] })))).toBeUndefined()
        const i = which % list.length
        const tokens = [...list[i]!.tokens, 0]
        const step = at % tokens.length
        tokens[step] = tokens[step]! + 1
        const other = reference.map((c, k) => (k === i ? { ...c, tokens } : c))
        const problem = completionsDiffer(reference, other)
        expect(problem).toContain(`of the node at [${list[i]!.path.join(", ")}]`)
        const firstDiff = step < list[i]!.tokens.length ? step : list[i]!.tokens.length
        expect(problem).toContain(`differs from step ${firstDiff}`)
      })
    )
  })

  it("tells a missing completion and another finish reason", () => {
    const a = [completion([0, 0], [1, 2]), completion([0, 1], [3])]
    expect(completionsDiffer(a, a.slice(0, 1))).toBe("1 completions instead of 2")
    expect(completionsDiffer(a, [a[0]!, { ...a[1]!, finishReason: "eos" }])).toBe("sample 0 of the node at [0, 1] finished with eos, not length")
  })

  it("fails the run when the two schedulings give other completions", async () => {
    // an engine whose waves draw another token: the bench must refuse to report figures
    const engine = {
      maxBatch: 2,
      clearCache: () => 0,
      generate: (request: GenerateRequest): Promise<GenerateResult> => {
        const leaves = request.tree.children!.flatMap((p, i) => p.children!.map((_, j) => [i, j] as const))
        const shift = request.scheduling === "waves" ? 1 : 0
        const completions = leaves.map(([i, j]) => completion([i, j], [7 + (j === 1 ? shift : 0)]))
        const stats = { generatedTokens: completions.length, idleShare: 0, meanBatch: 1, steps: 1, waves: 1, preemptions: 0, prefillTokens: 0 }
        return Promise.resolve({ completions, stats } as unknown as GenerateResult)
      }
    } as unknown as TreeEngine
    const options = { fewShot: "few-shot", problems: BUILTIN_PROBLEMS.slice(0, 1), samplesPerProblem: 3, minTokens: 1, maxTokens: 1, seed: 0, repeats: 1 }
    const error = await runScheduleBench(engine, options).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(ScheduleMismatch)
    expect((error as ScheduleMismatch).message).toMatch(/^waves scheduling, round 1: sample 0 of the node at \[0, 1\] differs from step 0/)
  })
})

describe("--scheduler", () => {
  it("reaches the engine: generate's samples run in waves of --max-batch, with the completions of continuous batching", () => {
    const tree = join(dir, "tree.json")
    writeFileSync(tree, JSON.stringify({ text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }))
    const run = (scheduler: string) => {
      const r = canopy(["generate", "--tree", tree, "--max-batch", "2", "--max-tokens", "4", "--seed", "5", "--scheduler", scheduler, "--json"], {
        CANOPY_ADAPTER: "software"
      })
      expect(r.status, r.stderr).toBe(0)
      return JSON.parse(r.stdout) as { completions: ReadonlyArray<unknown>; stats: { waves: number; samples: number } }
    }
    const continuous = run("continuous")
    const waves = run("waves")
    expect([continuous.stats.waves, waves.stats.waves, waves.stats.samples]).toEqual([1, 2, 3])
    expect(waves.completions).toEqual(continuous.completions)
  })
})

describe("canopy bench schedule", () => {
  it("refuses flags that leave nothing to compare, before the GPU opens", () => {
    const noGpu = { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" }
    const wide = canopy(["bench", "schedule", "--problems", "2", "--samples", "4", "--max-batch", "8"], noGpu)
    expect([wide.status, wide.stderr]).toEqual([
      2,
      "canopy: --max-batch 8 holds all 8 samples (--problems × --samples) at once: there would be one wave and nothing to compare; give a smaller --max-batch\n"
    ])
    const lengths = canopy(["bench", "schedule", "--min-tokens", "9", "--max-tokens", "8"], noGpu)
    expect([lengths.status, lengths.stderr]).toEqual([2, "canopy: --min-tokens 9 is more than --max-tokens 8\n"])
  })

  it("runs both schedulings small: the figures the drawn lengths imply, continuous leaving fewer places idle", () => {
    const json = join(dir, "schedule.json")
    const [problems, samples, batch, min, max, seed] = [2, 4, 2, 1, 16, 2]
    const r = canopy([
      "bench", "schedule", "--problems", `${problems}`, "--samples", `${samples}`, "--max-batch", `${batch}`,
      "--min-tokens", `${min}`, "--max-tokens", `${max}`, "--seed", `${seed}`, "--repeats", "1", "--json", json
    ], { CANOPY_ADAPTER: "software" })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain("continuous over waves: ")
    expect(r.stdout).toContain("overlapped over stepwise: ")
    const report = JSON.parse(readFileSync(json, "utf8")) as ScheduleReport
    const lengths = sampleLengths(problems * samples, min, max, seed)
    const tokens = lengths.reduce((a, b) => a + b, 0)
    expect(report).toMatchObject({
      maxBatch: batch, problems, samplesPerProblem: samples, samples: problems * samples, minTokens: min, maxTokens: max,
      generatedTokens: tokens, repeats: 1, identical: true
    })
    expect(report.adapter).toContain("(software)")
    const { continuous, waves, stepwise } = report.modes
    expect(stepwise).toBeDefined()
    // waves: the samples in order, `batch` at a time, each wave as many steps as its longest sample
    let waveSteps = 0
    for (let i = 0; i < lengths.length; i += batch) waveSteps += Math.max(...lengths.slice(i, i + batch))
    expect({ steps: waves.steps, waves: waves.waves, meanBatch: waves.meanBatch, idleShare: waves.idleShare }).toEqual({
      steps: waveSteps, waves: Math.ceil(lengths.length / batch), meanBatch: tokens / waveSteps, idleShare: 1 - tokens / (waveSteps * batch)
    })
    // continuous: no fewer steps than a full batch or the longest sample needs, every row one token
    expect(continuous.steps).toBeGreaterThanOrEqual(Math.max(Math.ceil(tokens / batch), ...lengths))
    expect(continuous.meanBatch).toBeCloseTo(tokens / continuous.steps, 12)
    expect(continuous.idleShare).toBeCloseTo(1 - tokens / (continuous.steps * batch), 12)
    expect(continuous.idleShare).toBeLessThan(waves.idleShare)
    // stepwise: the same continuous batching, each step read back before the next; a place refills as soon as its sample ends
    expect(stepwise!.steps).toBeGreaterThanOrEqual(Math.max(Math.ceil(tokens / batch), ...lengths))
    expect(stepwise!.meanBatch).toBeCloseTo(tokens / stepwise!.steps, 12)
    expect(stepwise!.idleShare).toBeLessThan(waves.idleShare)
    for (const m of [continuous, waves, stepwise!]) {
      // each timed run found its prompts prefilled just before, and nothing else cached
      expect([m.preemptions, m.prefillTokens, m.rounds.length, m.tokensPerSecond.n]).toEqual([0, 0, 1, 1])
      expect(m.tokensPerSecond.median).toBeCloseTo(tokens / m.seconds.median, 6)
    }
    expect(report.speedup.median).toBeCloseTo(continuous.rounds[0]! / waves.rounds[0]!, 12)
    expect(report.overlapSpeedup!.median).toBeCloseTo(continuous.rounds[0]! / stepwise!.rounds[0]!, 12)
  })
})
