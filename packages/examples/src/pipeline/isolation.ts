import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { DEFAULT_LIMITS, runProgram } from "./runner.ts"

/**
 * How a program's network is cut off. "netns" is a fresh network namespace
 * (only a downed loopback); "netns-userns" gets one through an unprivileged
 * user namespace; "none" means the program shares the host's network.
 */
export type NetworkIsolation = "netns" | "netns-userns" | "none"

/**
 * How a program's processes are fenced in. "pidns" is a fresh PID namespace
 * with its own /proc, whose PID 1 is the launcher: the program sees only the
 * processes of its own run, and all of them die when the run ends.
 * "pidns-userns" is the same through an unprivileged user namespace.
 */
export type PidIsolation = "pidns" | "pidns-userns" | "none"

/**
 * What a program may write. "readonly" is a private mount namespace where
 * every mount is read-only except the working folder (plus a fresh minimal
 * /dev with a private /dev/shm, and an empty /run), with every capability
 * dropped so the program cannot undo it. "readonly-userns" is the same
 * through an unprivileged user namespace; "none" leaves the host's mounts as
 * they are.
 */
export type MountIsolation = "readonly" | "readonly-userns" | "none"

export interface Isolation {
  readonly network: NetworkIsolation
  readonly pid: PidIsolation
  readonly mount: MountIsolation
  /** Command prefix that creates the namespaces, e.g. ["unshare", "--net", "--pid", ...]. */
  readonly prefix: ReadonlyArray<string>
  /** Why the stronger options were not used, for the run record. */
  readonly note: string
}

/** One line for a run's report, e.g. "network netns, pid pidns, mount readonly". */
export const describeIsolation = (isolation: Isolation): string =>
  `network ${isolation.network}, pid ${isolation.pid}, mount ${isolation.mount}`

type Level = Omit<Isolation, "note">

// --kill-child: if unshare itself is killed, the namespace's PID 1 gets SIGKILL and takes every process of the run along.
const PID = ["--pid", "--fork", "--kill-child", "--mount-proc"]
// Without root, a user namespace is needed to be allowed to create the other namespaces.
const ROOTLESS = "--map-root-user"

/** Strongest first; the first that works end to end is used. */
const LEVELS: ReadonlyArray<Level> = [
  { network: "netns", pid: "pidns", mount: "readonly", prefix: ["unshare", "--net", ...PID] },
  { network: "netns-userns", pid: "pidns-userns", mount: "readonly-userns", prefix: ["unshare", ROOTLESS, "--net", ...PID] },
  { network: "netns", pid: "pidns", mount: "none", prefix: ["unshare", "--net", ...PID] },
  { network: "netns-userns", pid: "pidns-userns", mount: "none", prefix: ["unshare", ROOTLESS, "--net", ...PID] },
  { network: "netns", pid: "none", mount: "none", prefix: ["unshare", "--net"] },
  { network: "netns-userns", pid: "none", mount: "none", prefix: ["unshare", ROOTLESS, "--net"] }
]

const NONE: Level = { network: "none", pid: "none", mount: "none", prefix: [] }

export const NO_ISOLATION: Isolation = { ...NONE, note: "disabled by configuration" }

/**
 * A program that prints "ok" only if the level really holds: the namespaces
 * being created is not enough, the launcher's setup must have taken effect.
 */
const probeProgram = (level: Level): string =>
  [
    "import errno, os, socket",
    "problems = []",
    ...(level.network === "none" ? [] : [
      "try:",
      "    socket.create_connection(('127.0.0.1', 9), timeout=1).close()",
      "except OSError as error:",
      "    if error.errno != errno.ENETUNREACH: problems.append('loopback is up')",
      "else:",
      "    problems.append('loopback is up')"
    ]),
    ...(level.pid === "none" ? [] : [
      "if os.getppid() != 1: problems.append('parent is pid %d, not the namespace init' % os.getppid())"
    ]),
    ...(level.mount === "none" ? [] : [
      "open('inside', 'w').write('x')",
      "try:",
      "    open(os.path.join('..', 'outside'), 'w').write('x')",
      "    problems.append('the folder above the working folder is writable')",
      "except OSError as error:",
      "    if error.errno != errno.EROFS: problems.append('write outside: %s' % error)"
    ]),
    "print('; '.join(problems) or 'ok')"
  ].join("\n")

const PROBE_LIMITS = { ...DEFAULT_LIMITS, wallMs: 10_000 }

/** Runs the probe program under one level; undefined when it holds, else why not. */
const tryLevel = (python: string, level: Level): Effect.Effect<string | undefined> =>
  Effect.acquireUseRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "canopy-probe-"))),
    (dir) =>
      Effect.gen(function*() {
        const cwd = join(dir, "work")
        yield* Effect.promise(() => mkdir(cwd).then(() => writeFile(join(cwd, "probe.py"), probeProgram(level))))
        const outcome = yield* runProgram({
          python,
          isolation: { ...level, note: "" },
          limits: PROBE_LIMITS,
          cwd,
          scriptName: "probe.py",
          stdin: ""
        })
        if (outcome.ending !== "exited") return `probe ended by ${outcome.ending}`
        const said = outcome.stdout.trim()
        if (outcome.exitCode === 0 && said === "ok") return undefined
        return said !== "" ? said : outcome.stderr.trim().split("\n").pop() || `exit ${String(outcome.exitCode)}`
      }).pipe(Effect.catch((error) => Effect.succeed(error.message))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }).catch(() => undefined))
  )

/**
 * Probes once which isolation this machine permits, strongest first, by
 * running a small program under each level and checking from inside that the
 * level holds; falls back to none. `note` lists why stronger levels failed.
 */
export const detectIsolation = (python: string): Effect.Effect<Isolation> =>
  Effect.gen(function*() {
    const failures: Array<string> = []
    for (const level of LEVELS) {
      const failure = yield* tryLevel(python, level)
      if (failure === undefined) return { ...level, note: failures.join("; ") }
      failures.push(`${describeIsolation({ ...level, note: "" })} (${level.prefix.join(" ")}): ${failure}`)
    }
    return { ...NONE, note: failures.join("; ") }
  })
