/**
 * Runs Node.js code in a process of its own, so that a driver that aborts
 * the process while it builds a pipeline (as NVIDIA's did for some
 * subgroup-matrix kernels) takes only that process down: the caller learns
 * how it ended (exit code or signal, a time limit) and what it printed.
 */
import { spawn } from "node:child_process"

export interface IsolatedRun {
  /** exit code, or null when a signal ended it */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** killed at the time limit */
  readonly timedOut: boolean
  readonly stdout: string
  readonly stderr: string
}

/** Output kept per stream: the end of it, where a crash's message is. */
const KEPT_CHARS = 64 * 1024

const keepTail = (text: string): string => (text.length > KEPT_CHARS ? text.slice(-KEPT_CHARS) : text)

export interface IsolatedOptions {
  /** also pass the child's output on to this process's stdout and stderr as it comes (default false) */
  readonly echo?: boolean
}

/** `node ...args` in a child process, killed (SIGKILL, with its process group) after `timeoutMs`. */
export const runIsolated = (args: ReadonlyArray<string>, timeoutMs: number, options: IsolatedOptions = {}): Promise<IsolatedRun> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { stdio: ["ignore", "pipe", "pipe"], detached: true })
    let stdout = ""
    let stderr = ""
    let timedOut = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout = keepTail(stdout + chunk)
      if (options.echo === true) process.stdout.write(chunk)
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = keepTail(stderr + chunk)
      if (options.echo === true) process.stderr.write(chunk)
    })
    const kill = () => {
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        child.kill("SIGKILL") // the group is gone already
      }
    }
    const timer = setTimeout(() => {
      timedOut = true
      kill()
    }, timeoutMs)
    // a parent that exits first must not leave the probe running
    process.once("exit", kill)
    child.once("error", (e) => {
      clearTimeout(timer)
      process.off("exit", kill)
      reject(e)
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      process.off("exit", kill)
      resolve({ code, signal, timedOut, stdout, stderr })
    })
  })
