/**
 * The page's build. It bundles the workspace's TypeScript sources (the
 * `@canopy/source` export condition) rather than copies of the packages, and
 * refuses any import of a Node module or of Dawn (`webgpu`): what the page
 * pulls in must run in a browser, and a stub in its place would fail only
 * when a user reached it.
 */
import { builtinModules } from "node:module"
import { defaultClientConditions, defineConfig, type Plugin } from "vite"

const NODE_ONLY = new Set([...builtinModules, "webgpu"])

/** Fails the build at any import of a Node module or of Dawn, naming the module that imports it. */
export const browserOnly = (): Plugin => ({
  name: "canopy-browser-only",
  enforce: "pre",
  resolveId(source, importer) {
    if (source.startsWith("node:") || NODE_ONLY.has(source)) {
      this.error(`${importer ?? "the page"} imports ${source}, which does not exist in a browser`)
    }
    return null
  }
})

export default defineConfig({
  root: import.meta.dirname,
  base: "./",
  plugins: [browserOnly()],
  resolve: { conditions: ["@canopy/source", ...defaultClientConditions] },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 2048 },
  server: { host: "127.0.0.1" },
  preview: { host: "127.0.0.1" }
})
