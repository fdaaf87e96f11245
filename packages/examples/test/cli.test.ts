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

describe("canopy generate --stream", () => {
  it("prints tokens as they come, each completion, then the stats, as JSON lines that agree with --json", async () => {
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises")
    const { tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const dir = await mkdtemp(join(tmpdir(), "canopy-stream-"))
    try {
      const tree = join(dir, "tree.json")
      await writeFile(tree, JSON.stringify({ text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }))
      const args = ["generate", "--tree", tree, "--max-tokens", "5", "--temperature", "0.9", "--seed", "3"]
      const streamed = canopy([...args, "--stream"])
      expect(streamed.status, streamed.stderr).toBe(0)
      const events = streamed.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
      expect(events.at(-1)!["event"]).toBe("done")
      const completions = events.filter((e) => e["event"] === "completion")
      expect(completions).toHaveLength(3)
      const whole = JSON.parse(canopy([...args, "--json"]).stdout) as { completions: Array<Record<string, unknown>> }
      const key = (c: Record<string, unknown>) => `${String(c["path"])}#${String(c["sample"])}`
      const sorted = [...completions].sort((a, b) => key(a).localeCompare(key(b)))
      expect(sorted.map(({ event: _, ...c }) => c)).toEqual([...whole.completions].sort((a, b) => key(a).localeCompare(key(b))))
      // every completion's tokens arrived one event at a time, in order, before it
      for (const c of completions) {
        const at = events.indexOf(c)
        const tokens = events.slice(0, at).filter((e) => e["event"] === "token" && key(e) === key(c)).map((e) => e["token"])
        expect(tokens).toEqual(c["tokens"])
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
