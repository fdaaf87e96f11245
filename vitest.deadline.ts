/**
 * The run's backstop (global setup, in vitest's main process): past
 * RUN_DEADLINE_MS the run is stopped, its worker processes and what they
 * started are killed, and it exits 1. Per-test limits cannot end a worker
 * that is blocked in synchronous code (spawnSync, a busy loop); this can.
 */
import { readdirSync, readFileSync } from "node:fs"
import { relative } from "node:path"
import type { TestProject } from "vitest/node"
import { RUN_DEADLINE_MS, TIMEOUT_SCALE } from "./vitest.limits.ts"

/** Every process below `root`, children before their parents' parents (Linux /proc; none elsewhere). */
const descendants = (root: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return []
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // the command name, in parentheses, may hold spaces: the parent pid is the second field after it
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)])
    } catch {
      // the process ended while we looked
    }
  }
  const found: Array<number> = []
  const walk = (pid: number): void => {
    for (const child of children.get(pid) ?? []) {
      walk(child)
      found.push(child)
    }
  }
  walk(root)
  return found
}

export default function setup(project: TestProject): () => void {
  const timer = setTimeout(() => {
    const minutes = (RUN_DEADLINE_MS / 60_000).toFixed(1)
    // files are reported when they finish: name the ones still running
    const running = project.vitest.state
      .getFiles()
      .filter((file) => file.result === undefined || file.result.state === "run")
      .map((file) => `  ${relative(process.cwd(), file.filepath)}\n`)
    process.stderr.write(
      `\nThe test run is past its deadline of ${minutes} min (CANOPY_TEST_TIMEOUT_SCALE=${TIMEOUT_SCALE}): ` +
        `something hangs. Stopping it; still running:\n${running.join("") || "  (no test file collected yet)\n"}`
    )
    for (const pid of descendants(process.pid)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
    process.exit(1)
  }, RUN_DEADLINE_MS)
  // the timer must not keep a finished run alive
  timer.unref()
  return () => clearTimeout(timer)
}
