/**
 * One prompt tree decoded twice: on the page (through its form, read back
 * from its hook) and by the Node engine on Dawn with the page's engine
 * options; then each sample of one compared with the other's (agreement.ts)
 * and the page's figures with the engine's own counts.
 */
import type { GpuHandle } from "@canopy/kernels"
import { type LoadedModel, type ModelConfig, TreeEngine } from "@canopy/runtime"
import type { Page } from "playwright-core"
import { expect } from "vitest"
import { type DecodeOutcome, samplingOf } from "../src/decode.ts"
import { joinProblems } from "../src/form.ts"
import type { PageState } from "../src/hook.ts"
import { formatBytes, kvBytesPerToken } from "../src/memory.ts"
import { ENGINE_OPTIONS, type PageSettings } from "../src/settings.ts"
import { promptTree } from "../src/tree.ts"
import { compareSample, type SampleRun } from "./agreement.ts"
import { scaled } from "./limits.ts"

export const waitFor = (page: Page, states: ReadonlyArray<PageState>, ms: number) =>
  page.waitForFunction((wanted) => wanted.includes(window.canopyPage?.state), states, { timeout: scaled(ms), polling: 100 })

/** Fills the form with `settings` (the synthetic preset and seed too, used when no folder is chosen) and clicks Decode. */
export const startOnPage = async (page: Page, settings: PageSettings): Promise<void> => {
  const fields: Record<string, string> = {
    fewShot: settings.tree.fewShot, problems: joinProblems(settings.tree.problems), samples: String(settings.tree.samples),
    maxTokens: String(settings.sampling.maxTokens), temperature: String(settings.sampling.temperature),
    seed: String(settings.sampling.seed), modelSeed: String(settings.modelSeed)
  }
  for (const [name, value] of Object.entries(fields)) await page.fill(`[name=${name}]`, value)
  await page.selectOption("[name=preset]", settings.preset)
  await page.click("button[type=submit]")
}

/** Decodes `settings` on the page; the run as the page's hook reports it. */
export const decodeOnPage = async (page: Page, settings: PageSettings): Promise<DecodeOutcome> => {
  await startOnPage(page, settings)
  await waitFor(page, ["done", "failed", "stopped"], 120_000)
  const hook = await page.evaluate(() => window.canopyPage)
  expect(hook.state, hook.message).toBe("done")
  return hook.lastRun!
}

const keyOf = (path: ReadonlyArray<number>, sample: number): string => `${path.join(".")}#${sample}`

/** The same tree decoded by the Node engine, on `model`, with the page's engine options; each sample's tokens and logits. */
export const decodeInNode = async (gpu: GpuHandle, model: LoadedModel, settings: PageSettings): Promise<Map<string, SampleRun>> => {
  const engine = await TreeEngine.create(gpu.device, model, ENGINE_OPTIONS)
  try {
    const logits = new Map<string, Array<Float32Array>>()
    const vocab = model.config.vocabSize
    const result = await engine.generate({ tree: promptTree(settings.tree), sampling: samplingOf(settings) }, {
      onLogits: (e) => e.rows.forEach((row, r) => {
        const key = keyOf(row.path, row.sample)
        logits.set(key, [...(logits.get(key) ?? []), e.logits.slice(r * vocab, (r + 1) * vocab)])
      })
    })
    return new Map(result.completions.map((c) => [keyOf(c.path, c.sample), { tokens: c.tokens, logits: logits.get(keyOf(c.path, c.sample)) ?? [] }]))
  } finally {
    engine.destroy()
  }
}

export const pageRuns = (run: DecodeOutcome): Map<string, SampleRun> => {
  const logits = new Map<string, Array<ReadonlyArray<number>>>()
  for (const step of run.logits) logits.set(keyOf(step.path, step.sample), [...(logits.get(keyOf(step.path, step.sample)) ?? []), step.logits])
  return new Map(run.completions.map((c) => [keyOf(c.path, c.sample), { tokens: c.tokens, logits: logits.get(keyOf(c.path, c.sample)) ?? [] }]))
}

/** Every sample of the page's run against Node's: the same tokens, or a near-tie; prints what was compared. */
export const expectAgreement = (page: Map<string, SampleRun>, node: Map<string, SampleRun>): void => {
  expect([...page.keys()].sort()).toEqual([...node.keys()].sort())
  let [equal, tokens, largest] = [0, 0, 0]
  for (const [key, run] of node) {
    const agreement = compareSample(page.get(key)!, run)
    expect(agreement.kind, `sample ${key}: ${JSON.stringify(agreement)}`).not.toBe("differ")
    if (agreement.kind === "differ") continue
    if (agreement.kind === "near-tie") console.log(`sample ${key}: a near-tie at token ${agreement.at} (logit gap ${agreement.gap})`)
    else equal++
    tokens += run.tokens.length
    largest = Math.max(largest, agreement.maxLogitDiff)
  }
  console.log(`${equal} of ${node.size} samples (${tokens} tokens) equal to Node's; largest logit difference ${largest}`)
}

/**
 * The figures line: a rate, and the per-sequence cache the engine's own
 * counts give (every sample's prompt, summed by the engine, plus the tokens
 * it generated).
 */
export const expectFigures = async (page: Page, run: DecodeOutcome, config: ModelConfig): Promise<void> => {
  const shown = (await page.textContent("#figures")) ?? ""
  expect(shown).toMatch(/^[\d.]+ tokens\/s decoding, [\d.]+ tokens\/s overall/)
  const perToken = kvBytesPerToken(config, ENGINE_OPTIONS.kvDtype)
  expect(shown).toContain(`vs ${formatBytes((run.stats.promptTokens + run.stats.generatedTokens) * perToken)} per sequence`)
}
