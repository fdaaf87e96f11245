#!/usr/bin/env node
// The `canopy` command line: its compiled JavaScript (dist/), built first when missing or older than
// the sources. Where the `@canopy/source` export condition is on (the tests turn it on, see
// vitest.source.ts), the packages resolve to their TypeScript sources, and so does the command line.
import { fileURLToPath } from "node:url"
import { ensureBuilt } from "./build.mjs"

if (import.meta.resolve("@canopy/runtime").endsWith(".ts")) {
  const { register } = await import("tsx/esm/api")
  register()
  await import("../src/cli/main.ts")
} else {
  ensureBuilt(fileURLToPath(new URL("..", import.meta.url)))
  await import("../dist/src/cli/main.js")
}
