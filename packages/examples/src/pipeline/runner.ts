import { spawn } from "node:child_process"
import { Effect, Schema } from "effect"
import type { Isolation } from "./isolation.ts"

export interface RunLimits {
  /** Wall-clock limit per run; the whole process group is killed when it passes. */
  readonly wallMs: number
  /** RLIMIT_CPU in seconds (SIGXCPU at the soft limit, SIGKILL one second later). */
  readonly cpuSeconds: number
  /** RLIMIT_AS in bytes: address space, so it also counts mapped but untouched memory. */
  readonly memoryBytes: number
  /** stdout and stderr together; reading stops and the group is killed past it. */
  readonly outputBytes: number
  /** RLIMIT_FSIZE in bytes, so a program cannot fill the disk through files it writes. */
  readonly fileBytes: number
}

export const DEFAULT_LIMITS: RunLimits = {
  wallMs: 4_000,
  cpuSeconds: 2,
  memoryBytes: 512 * 1024 * 1024,
  outputBytes: 64 * 1024,
  fileBytes: 16 * 1024 * 1024
}

export interface RunOutcome {
  /** "exited" covers normal exits and deaths by signals we did not send. */
  readonly ending: "exited" | "wall-timeout" | "output-limit"
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly seconds: number
}

export class RunnerError extends Schema.TaggedError<RunnerError>()("RunnerError", {
  message: Schema.String
}) {}

/**
 * Sets the resource limits and then replaces itself with the program, so the
 * limits bind the program and nothing runs between the two. Core dumps are off
 * so a crash does not litter the working folder.
 */
const LAUNCHER = [
  "import os, resource, sys",
  "memory, cpu, fsize = (int(v) for v in sys.argv[1:4])",
  "resource.setrlimit(resource.RLIMIT_AS, (memory, memory))",
  "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))",
  "resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))",
  "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))",
  "os.execv(sys.argv[4], sys.argv[4:])"
].join("\n")

export interface RunRequest {
  readonly python: string
  readonly isolation: Isolation
  readonly limits: RunLimits
  /** Working folder; also HOME and TMPDIR, so well-behaved programs write only there. */
  readonly cwd: string
  readonly scriptName: string
  readonly stdin: string
}

const minimalEnv = (cwd: string): NodeJS.ProcessEnv => ({
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: cwd,
  TMPDIR: cwd,
  LANG: "C.UTF-8",
  LC_ALL: "C.UTF-8"
})

const PIPE_GRACE_MS = 250

const killGroup = (pid: number | undefined): void => {
  if (pid === undefined) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Runs `python -I -B scriptName` in its own process group with the given stdin
 * and limits. Whatever the ending, the whole group is killed before the run
 * completes, so children the program left behind do not outlive it.
 */
export const runProgram = (request: RunRequest): Effect.Effect<RunOutcome, RunnerError> =>
  Effect.callback<RunOutcome, RunnerError>((resume) => {
    const { limits } = request
    const argv = [
      ...request.isolation.prefix,
      request.python,
      "-I",
      "-S",
      "-c",
      LAUNCHER,
      String(limits.memoryBytes),
      String(limits.cpuSeconds),
      String(limits.fileBytes),
      request.python,
      "-I",
      "-B",
      request.scriptName
    ]
    const [command, ...args] = argv
    const started = performance.now()
    const child = spawn(command ?? request.python, args, {
      cwd: request.cwd,
      env: minimalEnv(request.cwd),
      // A new session makes the child a process-group leader, so -pid reaches all its descendants.
      detached: true,
      stdio: ["pipe", "pipe", "pipe"]
    })

    let ending: RunOutcome["ending"] = "exited"
    let outputSeen = 0
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    const stop = (why: RunOutcome["ending"]) => {
      if (ending === "exited") ending = why
      killGroup(child.pid)
    }
    const collect = (into: Array<Buffer>) => (chunk: Buffer) => {
      if (ending === "output-limit") return
      const room = limits.outputBytes - outputSeen
      outputSeen += chunk.length
      into.push(room >= chunk.length ? chunk : chunk.subarray(0, Math.max(room, 0)))
      if (outputSeen > limits.outputBytes) stop("output-limit")
    }
    child.stdout.on("data", collect(stdout))
    child.stderr.on("data", collect(stderr))
    // A program that exits without reading its input closes the pipe under us; that is not our failure.
    child.stdin.on("error", () => {})
    child.stdin.end(request.stdin)

    const timer = setTimeout(() => stop("wall-timeout"), limits.wallMs)
    let settled = false
    child.on("error", (error) => {
      clearTimeout(timer)
      killGroup(child.pid)
      if (settled) return
      settled = true
      resume(Effect.fail(new RunnerError({ message: `cannot start ${argv[0] ?? ""}: ${error.message}` })))
    })
    // Kill leftovers as soon as the leader exits: a background child holding the pipes open would otherwise delay "close".
    // One that left the group (setsid) survives that, so stop waiting for its pipes after a short grace.
    let grace: NodeJS.Timeout | undefined
    let exitedAt: number | undefined
    child.on("exit", () => {
      exitedAt = performance.now()
      killGroup(child.pid)
      grace = setTimeout(() => {
        child.stdout.destroy()
        child.stderr.destroy()
      }, PIPE_GRACE_MS)
    })
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer)
      clearTimeout(grace)
      if (settled) return
      settled = true
      resume(Effect.succeed({
        ending,
        exitCode,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        seconds: ((exitedAt ?? performance.now()) - started) / 1000
      }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      killGroup(child.pid)
    })
  })
