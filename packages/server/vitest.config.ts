import { defineProject } from "vitest/config"
import { TEST_TIMEOUT_MS, TIMEOUT_SCALE } from "../../vitest.limits.ts"
import { sourceEnv, sourceResolution } from "../../vitest.source.ts"

// limits scale with CANOPY_TEST_TIMEOUT_SCALE (see vitest.limits.ts): they end hangs, a slow machine must not trip them
export default defineProject({
  ...sourceResolution,
  test: {
    name: "server",
    include: ["test/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: TEST_TIMEOUT_MS,
    provide: { timeoutScale: TIMEOUT_SCALE },
    env: sourceEnv
  }
})
