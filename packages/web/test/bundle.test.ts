/**
 * What a browser bundle of Canopy may pull in, checked the way the page is
 * built (its config's resolution and its Node-module guard): the whole
 * browser entry bundles, nothing of Node or Dawn in it; the main entry,
 * which opens Dawn and reads folders from disk, is refused by the guard.
 */
import { build, defaultClientConditions, type Plugin, type Rolldown } from "vite"
import { describe, expect, it } from "vitest"
import { browserOnly } from "../vite.config.ts"

const ENTRY = "virtual:canopy-entry"

/** An entry module that re-exports all of `specifier`, so every module behind it is bundled, used or not. */
const entry = (specifier: string): Plugin => ({
  name: "canopy-entry",
  resolveId: (id) => (id === ENTRY ? `\0${ENTRY}` : null),
  load: (id) => (id === `\0${ENTRY}` ? `export * from ${JSON.stringify(specifier)}` : null)
})

const bundle = (specifier: string) =>
  build({
    configFile: false,
    root: import.meta.dirname,
    logLevel: "silent",
    plugins: [browserOnly(), entry(specifier)],
    resolve: { conditions: ["@canopy/source", ...defaultClientConditions] },
    build: { write: false, minify: false, rollupOptions: { input: ENTRY, preserveEntrySignatures: "strict" } }
  })

describe("a browser bundle", () => {
  it("holds the whole browser entry, with no Node module or Dawn in it", async () => {
    const output = (await bundle("@canopy/runtime/browser")) as Rolldown.RolldownOutput
    const chunks = output.output.filter((o) => o.type === "chunk")
    for (const name of ["TreeEngine", "openWebGpu", "loadSyntheticModel", "loadModelFromFiles", "tokenizerFromJson"]) {
      expect(chunks[0]!.exports).toContain(name)
    }
    const code = chunks.map((c) => c.code).join("\n")
    expect(code).not.toMatch(/from\s*["']node:|require\(["'](node:|webgpu)/)
  })

  it("refuses the main entry, naming the Node module it needs", async () => {
    const refused = await bundle("@canopy/runtime").then(() => "bundled", (e: unknown) => String(e))
    expect(refused).toMatch(/imports node:[a-z/]+, which does not exist in a browser/)
  })
})
