/**
 * Tests run the workspace's TypeScript sources, never a dist/ build that may
 * be stale. Every `@canopy/*` package export has an `@canopy/source`
 * condition pointing at its sources (published consumers, without the
 * condition, get dist/). Each vitest project turns it on in three places:
 * Vite's resolver (the test files), the worker processes (vitest passes
 * `ssr.resolve.conditions` to them as `--conditions`), and, through
 * NODE_OPTIONS, every node process a test starts (tsx, `pnpm canopy`).
 */
export const SOURCE_CONDITION = "@canopy/source"

// vitest's own server conditions (Vite's defaults without "module"), after the source condition
const conditions = [SOURCE_CONDITION, "node", "development|production"]

export const sourceResolution = { resolve: { conditions }, ssr: { resolve: { conditions } } }

export const sourceEnv = {
  NODE_OPTIONS: [process.env["NODE_OPTIONS"], `--conditions=${SOURCE_CONDITION}`].filter((o) => o !== undefined && o !== "").join(" ")
}
