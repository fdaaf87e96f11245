/**
 * Debian's Chromium, headless, driven through playwright-core (whose own
 * browser download cannot run here). With the WebGPU flags the page gets an
 * adapter through SwiftShader; without them it gets none. Each launch has a
 * fresh profile folder, removed when the browser closes.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type BrowserContext, chromium, type Page } from "playwright-core"

export const CHROMIUM = "/usr/bin/chromium"

const QUIET = [
  "--headless", "--no-sandbox", "--disable-gpu-sandbox", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic"
]

/** What makes Chromium on Linux offer WebGPU (through SwiftShader where there is no GPU). */
export const WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan"]

export interface Browser {
  readonly page: Page
  /** what the page logged, for a failure's message */
  readonly console: Array<string>
  close(): Promise<void>
}

/** Starts Chromium, with or without WebGPU; a launch that takes longer than `timeoutMs` fails. */
export const launchChromium = async (options: { readonly webgpu: boolean; readonly timeoutMs: number }): Promise<Browser> => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run scripts/setup.sh as root, or apt-get install -y chromium`)
  const profile = mkdtempSync(join(tmpdir(), "canopy-chromium-"))
  let context: BrowserContext | undefined
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: options.timeoutMs,
      args: [...QUIET, ...(options.webgpu ? WEBGPU_FLAGS : [])],
      viewport: { width: 1200, height: 900 }
    })
    const page = context.pages()[0] ?? (await context.newPage())
    const logged: Array<string> = []
    page.on("console", (m) => void logged.push(`${m.type()}: ${m.text()}`))
    page.on("pageerror", (e) => void logged.push(`pageerror: ${e.message}`))
    const opened = context
    return {
      page,
      console: logged,
      close: async () => {
        await opened.close()
        rmSync(profile, { recursive: true, force: true })
      }
    }
  } catch (e) {
    await context?.close()
    rmSync(profile, { recursive: true, force: true })
    throw e
  }
}
