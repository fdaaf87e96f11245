/**
 * The distributed commands as a user runs them: a redis-server, two
 * `canopy worker` processes, and `canopy sample --queue` with the flags of a
 * local run writing the same samples.jsonl and pass@k as `canopy sample`
 * does here; `--detach` with `canopy status` and `canopy collect`; and the
 * queue's bad input refused before anything runs. The queue's protocol and
 * its faults (a killed worker, a Redis restart) are tested in packages/queue.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "canopy-queue-cli-"))
const children: Array<ChildProcess> = []

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts a process in its own group (a kill reaches all of it), keeping its output. */
const launch = (command: string, args: ReadonlyArray<string>) => {
  const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], detached: true })
  children.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d: Buffer) => void (stdout += d.toString()))
  child.stderr!.on("data", (d: Buffer) => void (stderr += d.toString()))
  const done = new Promise<Ran>((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })))
  return { child, done, output: () => stdout + stderr }
}

const killGroup = (child: ChildProcess) => {
  try {
    process.kill(-child.pid!, "SIGKILL")
  } catch {
    // gone already
  }
}

/** One `canopy` command, to its end; its own limit ends a hang. */
const canopy = async (args: ReadonlyArray<string>): Promise<Ran> => {
  const run = launch(process.execPath, ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args])
  const timer = setTimeout(() => killGroup(run.child), scaled(120_000))
  const ran = await run.done
  clearTimeout(timer)
  return ran
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

const until = async (check: () => boolean, ms: number) => {
  const deadline = Date.now() + scaled(ms)
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  return check()
}

let url = ""
const WORKLOAD = ["--limit", "2", "--samples", "4", "--max-tokens", "6", "--seed", "3", "--quiet"]

beforeAll(async () => {
  const port = await freePort()
  url = `redis://127.0.0.1:${port}/0`
  // bounded: timeout ends it if this test run dies first
  const redis = launch("timeout", ["-s", "KILL", String(Math.ceil(scaled(900_000) / 1000)), "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir])
  expect(await until(() => redis.output().includes("Ready to accept connections"), 20_000), redis.output()).toBe(true)
  const workers = ["cli-a", "cli-b"].map((id) =>
    launch(process.execPath, ["--import", "tsx", "packages/examples/src/cli/main.ts", "worker", "--queue", url, "--id", id, "--concurrency", "2", "--quiet"])
  )
  for (const w of workers) expect(await until(() => w.output().includes("canopy worker: serving"), 300_000), w.output()).toBe(true)
})

afterAll(() => {
  for (const c of children) killGroup(c)
  rmSync(dir, { recursive: true, force: true })
})

const samplesOf = (out: string) => readFileSync(join(out, "samples.jsonl"), "utf8")

/** Every line of samples.jsonl as written, but for how long each test ran. */
const verdictsOf = (out: string) =>
  samplesOf(out).trim().split("\n").map((line) => {
    const record = JSON.parse(line) as { verdicts?: Array<Record<string, unknown>> }
    return { ...record, verdicts: record.verdicts?.map(({ seconds: _, ...v }) => v) }
  })

/** What was drawn, without the verdicts of an evaluated run. */
const drawn = (out: string) =>
  samplesOf(out).trim().split("\n").map((line) => {
    const { problem_id, sample, text, tokens, finish_reason } = JSON.parse(line) as Record<string, unknown>
    return { problem_id, sample, text, tokens, finish_reason }
  })

describe("canopy sample --queue", () => {
  it("writes the samples, the report and pass@k a local run writes", async () => {
    const local = await canopy(["sample", ...WORKLOAD, "--evaluate", "--out", join(dir, "local")])
    expect(local.code, local.stderr).toBe(0)
    const queued = await canopy(["sample", ...WORKLOAD, "--evaluate", "--queue", url, "--block", "2", "--out", join(dir, "queued")])
    expect(queued.code, queued.stderr).toBe(0)
    expect(queued.stderr).toMatch(/canopy: run r[0-9a-f]{10} enqueued on .*: 4 jobs/)
    expect(queued.stdout).toMatch(/samples: 8 \(2 problems × 4\)/)
    expect(verdictsOf(join(dir, "queued"))).toEqual(verdictsOf(join(dir, "local")))
    const pass = (s: string) => s.split("\n").find((l) => l.startsWith("pass@k:"))
    expect(pass(queued.stdout)).toBe(pass(local.stdout))
    expect(readFileSync(join(dir, "queued", "report.md"), "utf8")).toContain("Distributed run r")
  })

  it("returns at once with --detach; status follows the run and collect writes it", async () => {
    const detached = await canopy(["sample", ...WORKLOAD, "--queue", url, "--block", "3", "--detach"])
    expect(detached.code, detached.stderr).toBe(0)
    const run = detached.stdout.trim()
    expect(run).toMatch(/^r[0-9a-f]{10}$/)
    const deadline = Date.now() + scaled(300_000)
    let status = await canopy(["status", run, "--queue", url])
    while (!status.stdout.includes(`run ${run}: done`) && Date.now() < deadline) {
      expect(status.code, status.stderr).toBe(0)
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      status = await canopy(["status", run, "--queue", url])
    }
    expect(status.stdout).toContain(`run ${run}: done`)
    expect(status.stdout).toContain("samples 8/8")
    expect(status.stdout).toMatch(/worker cli-[ab]: serving/)
    const collected = await canopy(["collect", run, "--queue", url, "--out", join(dir, "collected")])
    expect(collected.code, collected.stderr).toBe(0)
    // other blocks, other workers, the same samples: each is keyed by (problem, sample) and seeded by them
    expect(drawn(join(dir, "collected"))).toEqual(drawn(join(dir, "local")))
    const listed = await canopy(["status", "--queue", url])
    expect(listed.stdout).toContain(`${run}  done`)
  })

  it("refuses bad queue input before anything runs, naming it", async () => {
    const badUrl = await canopy(["sample", "--queue", "http://127.0.0.1:6379/0", "--quiet"])
    expect(badUrl.code).toBe(2)
    expect(badUrl.stderr).toContain("the scheme must be redis://")
    const compare = await canopy(["sample", "--queue", url, "--compare", "--quiet"])
    expect([compare.code, compare.stderr]).toEqual([2, "canopy: --compare times the three modes on this machine; it does not go with --queue\n"])
    const detach = await canopy(["sample", "--detach", "--quiet"])
    expect(detach.code).toBe(2)
    expect(detach.stderr).toContain("--detach is for runs on a queue")
    const unknown = await canopy(["status", "rnosuchrun0", "--queue", url])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('RunNotFound: no run "rnosuchrun0"')
    const away = await canopy(["status", "--queue", "redis://127.0.0.1:1/0"])
    expect(away.code).toBe(1)
    expect(away.stderr).toContain("QueueUnavailable: the queue at redis://127.0.0.1:1/0 cannot be used: connect ECONNREFUSED")
  })
})
