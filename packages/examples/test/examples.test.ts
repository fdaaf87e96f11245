/**
 * The runnable examples, run as a user would (`node --import tsx examples/…`)
 * on the synthetic tiny model: each must finish, exit on its own and print
 * what its header promises.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { describe, expect, it, onTestFinished } from "vitest"
import { scaled } from "./limits.ts"

const run = (script: string, ...args: Array<string>) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", join("examples", script), ...args], {
    cwd: join(import.meta.dirname, ".."),
    // a bound on the child, which runs ~15 s on a quiet machine: it ends a hang, not a slow run
    timeout: scaled(90_000)
  })

describe("examples", () => {
  it("few-shot-tree prints four samples per problem and prefills the shared prefix once", async () => {
    const { stdout } = await run("few-shot-tree.ts")
    expect(stdout.match(/^sum #\d/gm)).toHaveLength(4)
    expect(stdout.match(/^reverse #\d/gm)).toHaveLength(4)
    const [, prefilled, unshared] = /prefilled (\d+) prompt tokens; without sharing: (\d+)/.exec(stdout) ?? []
    expect(Number(prefilled)).toBeGreaterThan(0)
    expect(Number(prefilled) * 4).toBeLessThan(Number(unshared))
  })

  it("prompt-session reuses the cached prefix on its second run", async () => {
    const { stdout } = await run("prompt-session.ts")
    const reused = [...stdout.matchAll(/reused (\d+) from the cache/g)].map((m) => Number(m[1]))
    expect(reused).toHaveLength(2)
    expect(reused[0]).toBe(0)
    expect(reused[1]).toBeGreaterThan(0)
  })

  it("sampling-pipeline writes evaluated samples and a report", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-example-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const { stdout } = await run("sampling-pipeline.ts", dir)
    expect(existsSync(join(dir, "samples.jsonl"))).toBe(true)
    expect(existsSync(join(dir, "report.md"))).toBe(true)
    expect(stdout).toContain("samples: 4 (2 problems × 2)")
    expect(stdout).toContain("pass@1")
  })
})
