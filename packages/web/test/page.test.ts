/**
 * The page in a real browser: built with Vite, served from a static folder
 * on a loopback port, and driven in Debian's headless Chromium. It decodes
 * prompt trees with greedy decoding, on the synthetic model and on a model
 * folder picked through its directory picker, and every sample's tokens
 * must be the Node engine's for the same model, tree and settings (or, from
 * a token on, a near-tie: see agreement.ts). Stop must end a run and leave
 * the page ready for the next. Without the WebGPU flags the page must say it
 * has no WebGPU and how to get it.
 */
import { type GpuHandle, openGpu } from "@canopy/kernels"
import { loadModel, loadSyntheticModel, PRESETS } from "@canopy/runtime"
import fc from "fast-check"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import type { Page } from "playwright-core"
import { build } from "vite"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DEFAULT_SETTINGS, type PageSettings } from "../src/settings.ts"
import { type Browser, launchChromium } from "./browser.ts"
import { FOLDER_CONFIG, writeModelFolder } from "./folderModel.ts"
import { scaled } from "./limits.ts"
import { decodeInNode, decodeOnPage, expectAgreement, expectFigures, pageRuns, startOnPage, waitFor } from "./runs.ts"
import { serveFolder, type StaticServer } from "./serve.ts"

const webRoot = join(import.meta.dirname, "..")
/** Where the screenshot of the finished page goes (a CI artifact; the README shows one like it). */
const SCREENSHOT = join(webRoot, "../../out/web/page.png")

let scratch = ""
let server: StaticServer | undefined

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "canopy-web-"))
  const outDir = join(scratch, "site")
  await build({ configFile: join(webRoot, "vite.config.ts"), build: { outDir, emptyOutDir: true }, logLevel: "warn" })
  server = await serveFolder(outDir)
})

afterAll(async () => {
  await server?.close()
  if (scratch !== "") rmSync(scratch, { recursive: true, force: true })
})

/**
 * A page opened with `?logits` in a fresh Chromium with WebGPU, and Node's
 * device beside it: SwiftShader when the page has SwiftShader (Node could
 * otherwise pick another software adapter, whose kernels round differently).
 */
const withPage = async (work: (page: Page, gpu: GpuHandle) => Promise<void>): Promise<void> => {
  let browser: Browser | undefined
  let gpu: GpuHandle | undefined
  try {
    browser = await launchChromium({ webgpu: true, timeoutMs: scaled(60_000) })
    await browser.page.goto(`${server!.url}?logits`)
    await waitFor(browser.page, ["ready", "failed"], 60_000)
    const hook = await browser.page.evaluate(() => window.canopyPage)
    expect(hook.message).toMatch(/^ready: /)
    gpu = await openGpu(/swiftshader/i.test(hook.adapter) ? { adapter: { name: "swiftshader" } } : {})
    await work(browser.page, gpu)
  } catch (e) {
    if (browser !== undefined) console.log(`the page's console:\n${browser.console.join("\n")}`)
    throw e
  } finally {
    await browser?.close()
    gpu?.close()
  }
}

const greedy = (settings: PageSettings, maxTokens: number): PageSettings => ({ ...settings, sampling: { ...settings.sampling, temperature: 0, maxTokens } })

/** Printable text with multi-byte characters, and no line that would read as a problem separator. */
const pieceText = fc.string({ unit: fc.constantFrom(..."abc xyz\n:=()+-é€🌲"), minLength: 1, maxLength: 40 })
  .filter((t) => t.split("\n").every((line) => line.trim() !== "---") && t.trim() !== "")

const greedyTrees: fc.Arbitrary<PageSettings> = fc.record({
  tree: fc.record({ fewShot: pieceText, problems: fc.array(pieceText, { minLength: 1, maxLength: 3 }), samples: fc.integer({ min: 1, max: 3 }) }),
  sampling: fc.record({ maxTokens: fc.integer({ min: 1, max: 10 }), temperature: fc.constant(0), seed: fc.nat(1000) }),
  preset: fc.constant("tiny" as const),
  modelSeed: fc.nat(1000)
})

describe("the page in headless Chromium", () => {
  it("decodes greedy prompt trees on the synthetic model to the Node engine's tokens, and draws the finished tree", async () => {
    await withPage(async (page, gpu) => {
      const check = async (settings: PageSettings): Promise<void> => {
        const run = await decodeOnPage(page, settings)
        const model = await loadSyntheticModel(gpu.device, settings.preset, settings.modelSeed)
        try {
          expectAgreement(pageRuns(run), await decodeInNode(gpu, model, settings))
        } finally {
          model.weights.destroy()
        }
        await expectFigures(page, run, PRESETS[settings.preset])
      }
      // A hand-picked tree first, the page's own; then random ones on the same page, its KV cache reused.
      await check(greedy(DEFAULT_SETTINGS, 12))
      mkdirSync(dirname(SCREENSHOT), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      console.log(`screenshot of the finished page: ${SCREENSHOT}`)
      await fc.assert(fc.asyncProperty(greedyTrees, check), { numRuns: 2, endOnFailure: true })
    })
  })

  it("decodes with a model folder chosen in its directory picker to the tokens Node gives for the folder on disk", async () => {
    const dir = join(scratch, "picked-model")
    await writeModelFolder(dir)
    await withPage(async (page, gpu) => {
      await page.check("input[name=model][value=files]")
      await page.setInputFiles("#folder", dir)
      const settings: PageSettings = {
        ...DEFAULT_SETTINGS,
        tree: { fewShot: "abc ab abc", problems: ["a abc", " abcab", "cab"], samples: 2 },
        sampling: { maxTokens: 8, temperature: 0, seed: 0 }
      }
      const run = await decodeOnPage(page, settings)
      const model = await loadModel(gpu.device, { kind: "folder", dir })
      try {
        expectAgreement(pageRuns(run), await decodeInNode(gpu, model, settings))
      } finally {
        model.weights.destroy()
      }
      await expectFigures(page, run, FOLDER_CONFIG)
      expect(await page.textContent("#status")).toBe(`done on ${await page.evaluate(() => window.canopyPage.adapter)}`)
    })
  })

  it("stops a run at Stop, and decodes the next one", async () => {
    await withPage(async (page) => {
      const long: PageSettings = { ...DEFAULT_SETTINGS, sampling: { maxTokens: 1024, temperature: 0.8, seed: 1 } }
      await startOnPage(page, long)
      await page.waitForSelector(".sample-text:not(:empty)", { timeout: scaled(120_000) })
      await page.click("#stop")
      await waitFor(page, ["stopped", "done", "failed"], 60_000)
      expect(await page.evaluate(() => window.canopyPage.state)).toBe("stopped")
      const next = await decodeOnPage(page, greedy(DEFAULT_SETTINGS, 4))
      expect(next.completions).toHaveLength(DEFAULT_SETTINGS.tree.problems.length * DEFAULT_SETTINGS.tree.samples)
      for (const c of next.completions) expect(c.tokens.length).toBeLessThanOrEqual(4)
    })
  })

  it("says the browser has no WebGPU, and which browsers and flags give it, when launched without the WebGPU flags", async () => {
    const browser = await launchChromium({ webgpu: false, timeoutMs: scaled(60_000) })
    try {
      const { page } = browser
      await page.goto(server!.url)
      await waitFor(page, ["ready", "failed"], 60_000)
      const hook = await page.evaluate(() => window.canopyPage)
      expect(hook.state).toBe("failed")
      expect(hook.failure).toBe("no-webgpu")
      const shown = await page.textContent("#status")
      expect(shown).toContain("no WebGPU adapter")
      expect(shown).toContain("--enable-unsafe-webgpu --enable-features=Vulkan")
      expect(shown).toContain("Safari")
      expect(await page.isDisabled("button[type=submit]")).toBe(true)
    } finally {
      await browser.close()
    }
  })
})
