import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: ["packages/*"],
    // The software adapter runs one GPU at a time on two cores: keep GPU suites in one worker each.
    fileParallelism: true,
    maxWorkers: 2,
    // ends the whole run past RUN_DEADLINE_MS (vitest.limits.ts), whatever hangs
    globalSetup: ["./vitest.deadline.ts"]
  }
})
