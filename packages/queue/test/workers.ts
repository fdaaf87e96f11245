/**
 * Worker processes for the tests (fixtures/worker.ts), each in its own
 * process group so that a kill reaches everything it started, with its
 * output kept for the test to read and for the failure message.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { WorkerTiming } from "../src/index.ts"
import { killGroup } from "./redis.ts"

const FIXTURE = fileURLToPath(new URL("./fixtures/worker.ts", import.meta.url))

export interface WorkerConfig {
  readonly url: string
  readonly id: string
  readonly pool?: string
  readonly concurrency: number
  readonly kvDtype?: "f16" | "f32"
  readonly graceMs?: number
  readonly lifetimeMs: number
  readonly timing: Partial<WorkerTiming>
  /** variables over the test's own (a broken adapter, say) */
  readonly env?: Readonly<Record<string, string>>
}

export interface WorkerProcess {
  readonly id: string
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** SIGKILL to its process group */
  readonly kill: () => void
  /** SIGTERM to the worker itself: a graceful stop */
  readonly terminate: () => void
}

export const spawnWorker = (config: WorkerConfig): WorkerProcess => {
  const settings = { kvDtype: "f16", pool: "default", graceMs: 30_000, ...config, env: undefined }
  const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, JSON.stringify(settings)], {
    env: { ...process.env, ...config.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  let output = ""
  child.stdout!.on("data", (d: Buffer) => void (output += d.toString()))
  child.stderr!.on("data", (d: Buffer) => void (output += d.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  return {
    id: config.id,
    child,
    output: () => output,
    exited,
    kill: () => killGroup(child),
    terminate: () => void child.kill("SIGTERM")
  }
}
