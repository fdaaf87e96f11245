import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: ["packages/*"],
    // The software adapter runs one GPU at a time on two cores: keep GPU suites in one worker each.
    fileParallelism: true,
    maxWorkers: 2
  }
})
