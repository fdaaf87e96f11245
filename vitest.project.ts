/**
 * The vitest project of one workspace package: its tests under test/, the
 * shared setup, limits that scale with CANOPY_TEST_TIMEOUT_SCALE (see
 * vitest.limits.ts: they end hangs, a slow machine must not trip them), and
 * the workspace's sources rather than dist/ (vitest.source.ts).
 */
import { defineProject } from "vitest/config"
import { TEST_TIMEOUT_MS, TIMEOUT_SCALE } from "./vitest.limits.ts"
import { sourceEnv, sourceResolution } from "./vitest.source.ts"

export const packageProject = (name: string) =>
  defineProject({
    ...sourceResolution,
    test: {
      name,
      include: ["test/**/*.test.ts"],
      setupFiles: ["../../vitest.setup.ts"],
      testTimeout: TEST_TIMEOUT_MS,
      hookTimeout: TEST_TIMEOUT_MS,
      provide: { timeoutScale: TIMEOUT_SCALE },
      env: sourceEnv
    }
  })
