import { spawnSync } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const canopy = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env }
  })

const hasGpuNode = existsSync("/dev/nvidia0") || (existsSync("/dev/dri") && readdirSync("/dev/dri").some((n) => n.startsWith("renderD")))

describe("the command line's errors", () => {
  it("says what to install when no adapter can be found", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("no WebGPU adapter found")
    expect(r.stderr).toContain("apt-get install")
  })

  it.runIf(!hasGpuNode)("refuses to fall back when told to use hardware on a machine without a GPU", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "hardware" })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("no WebGPU adapter found")
  })

  it("rejects an unknown model preset with exit code 2, naming the presets", () => {
    const r = canopy(["sample", "--model", "synthetic:huge", "--samples", "1", "--quiet"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("tiny")
  })

  it("rejects a prompt tree that is not valid with exit code 2, naming the field", () => {
    const r = canopy(["generate", "--tree", "/nonexistent/tree.json"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("--tree")
  })
})
