import { spawn } from "node:child_process"
import { constants } from "node:os"
import type { Readable } from "node:stream"
import { Effect, Schema } from "effect"
import type { Isolation } from "./isolation.ts"

export interface RunLimits {
  /** Wall-clock limit per run, from the program's start; the whole process group is killed when it passes. */
  readonly wallMs: number
  /** RLIMIT_CPU in seconds (SIGXCPU at the soft limit, SIGKILL one second later). */
  readonly cpuSeconds: number
  /** RLIMIT_AS in bytes: address space, so it also counts mapped but untouched memory. */
  readonly memoryBytes: number
  /** stdout and stderr together; reading stops and the group is killed past it. */
  readonly outputBytes: number
  /** RLIMIT_FSIZE in bytes, so a program cannot fill the disk through files it writes; also the size of its private /dev/shm. */
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
  /** From the program's start, after the isolation was set up. */
  readonly seconds: number
}

export class RunnerError extends Schema.TaggedError<RunnerError>()("RunnerError", {
  message: Schema.String
}) {}

/**
 * The process the evaluator starts for every run (run as `python -I -S -c LAUNCHER
 * memory cpu fsize shm flags program...`). Inside a PID namespace it is PID 1.
 *
 * 1. With the "mount" flag it turns the mount namespace it was started in into
 *    a read-only view of the system with only the working folder writable, a
 *    fresh /dev holding a few harmless devices and a private /dev/shm, and an
 *    empty /run. Any failure aborts before the program starts.
 * 2. It forks the program: the child sets the resource limits, drops every
 *    capability (with "mount"; otherwise a root program could remount the view
 *    writable) and execs the program, so the limits bind the program and its
 *    descendants but not this supervisor.
 * 3. It reports on fd 3, which the program never holds: "ready" once the
 *    program is started, then "exit N" or "signal N" for the program itself,
 *    so a setup failure cannot be mistaken for the program's, nor the reverse.
 * 4. It exits with the program. As PID 1 that kills every process left in the
 *    namespace, daemons included. When the evaluator goes away (fd 3 hangs
 *    up), it takes the run down with it.
 *
 * Being the program's parent also means the program's getppid() is never the
 * evaluator. Core dumps are off so a crash does not litter the working folder.
 */
const LAUNCHER = String.raw`
import os, resource, select, signal, sys

STATUS = 3
memory, cpu, fsize, shm = (int(v) for v in sys.argv[1:5])
flags = set(sys.argv[5].split(","))
program = sys.argv[6:]
libc = None

def fail(message):
    os.write(2, ("isolation setup failed: %s\n" % message).encode())
    os._exit(125)

def call(result, what):
    import ctypes
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, "%s: %s" % (what, os.strerror(error)))

def mount(source, target, fstype, options, data=None):
    import ctypes
    enc = lambda text: None if text is None else text.encode()
    call(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(options), enc(data)), "mount " + target)

def set_readonly(path, readonly, recursive):
    # mount_setattr (Linux 5.12+) covers every mount below a path at once, hidden ones too.
    import ctypes
    class MountAttr(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]
    attr = MountAttr(1, 0, 0, 0) if readonly else MountAttr(0, 1, 0, 0)
    call(libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), path.encode(), ctypes.c_uint(0x8000 if recursive else 0),
                      ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr " + path)

def isolate_mounts(work):
    global libc
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE = 1, 2, 4, 8, 4096, 8192
    # The working folder becomes a mount of its own, so it can stay writable below a read-only root.
    mount(work, work, None, MS_BIND)
    set_readonly("/", True, True)
    set_readonly(work, False, False)
    # Device nodes stay writable on a read-only mount, so the host's /dev would still expose its disks.
    stage = os.path.join(work, ".canopy-dev")
    os.mkdir(stage)
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        if os.path.exists("/dev/" + name):
            open(os.path.join(stage, name), "w").close()
            mount("/dev/" + name, os.path.join(stage, name), None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(stage, name))
    os.mkdir(os.path.join(stage, "shm"))
    # multiprocessing needs a writable /dev/shm; this one is private to the run and gone with it.
    mount("tmpfs", os.path.join(stage, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=%d" % shm)
    mount(stage, "/dev", None, MS_MOVE)
    os.rmdir(stage)
    set_readonly("/dev", True, False)
    # Unix sockets ignore read-only mounts; /run is where daemons keep theirs (docker, systemd, dbus).
    if os.path.isdir("/run"):
        mount("tmpfs", "/run", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=4k")

def drop_capabilities():
    import ctypes
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for capability in range(last + 1):
        call(libc.prctl(24, capability, 0, 0, 0), "PR_CAPBSET_DROP")
    call(libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    call(libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")

def start():
    try:
        os.close(STATUS)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if "mount" in flags:
            drop_capabilities()
        os.execv(program[0], program)
    except BaseException as error:
        os.write(2, ("cannot start the program: %s\n" % error).encode())
    os._exit(127)

def report(line):
    try:
        os.write(STATUS, line.encode())
    except OSError:
        pass

if "mount" in flags:
    work = os.path.realpath(os.getcwd())
    try:
        isolate_mounts(work)
    except Exception as error:
        fail(str(error))
    # The old current directory is on the now read-only mount; the bind mount is the writable one.
    os.chdir(work)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda signum, frame: None)
# Python's own SIGINT handler would let the program end this supervisor early.
signal.signal(signal.SIGINT, signal.SIG_IGN)
# Before the fork, so nothing the program does can keep it from being sent.
report("ready\n")
child = os.fork()
if child == 0:
    start()
poller = select.poll()
poller.register(STATUS, 0)
poller.register(wake_r, select.POLLIN)
while True:
    for fd, events in poller.poll():
        if fd == STATUS:
            if "pid" not in flags:
                os.killpg(0, signal.SIGKILL)
            os._exit(1)
        os.read(wake_r, 4096)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == child:
            if os.WIFSIGNALED(status):
                report("signal %d\n" % os.WTERMSIG(status))
                os._exit(128 + os.WTERMSIG(status))
            report("exit %d\n" % os.WEXITSTATUS(status))
            os._exit(os.WEXITSTATUS(status))
`

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

/** Extra time allowed for starting the namespaces and the launcher, before the program's wall clock starts. */
const SETUP_MS = 5_000

const signalName = (signal: number): NodeJS.Signals | null =>
  (Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] as NodeJS.Signals | undefined) ?? null

interface LauncherStatus {
  readonly ready: boolean
  /** The program's own ending, absent when the launcher itself was killed. */
  readonly ending?: { readonly exitCode: number | null; readonly signal: NodeJS.Signals | null }
}

const parseStatus = (text: string): LauncherStatus => {
  const lines = text.split("\n")
  const ready = lines[0] === "ready"
  const last = /^(exit|signal) (\d+)$/.exec(lines[1] ?? "")
  if (!ready || last === null) return { ready }
  const value = Number(last[2])
  return { ready, ending: last[1] === "exit" ? { exitCode: value, signal: null } : { exitCode: null, signal: signalName(value) } }
}

const launcherFlags = (isolation: Isolation): string =>
  [isolation.pid !== "none" ? "pid" : "", isolation.mount !== "none" ? "mount" : ""].filter((f) => f !== "").join(",") || "-"

const killGroup = (pid: number | undefined): void => {
  if (pid === undefined) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Runs `python -I -B scriptName` under the launcher, with the isolation's
 * namespaces, in its own process group with the given stdin and limits.
 * Whatever the ending, the whole group is killed before the run completes; in
 * a PID namespace every process of the run is gone by then, also those that
 * left the group. Fails with RunnerError when the isolation cannot be set up,
 * rather than running the program with less than the isolation promised.
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
      String(limits.fileBytes),
      launcherFlags(request.isolation),
      request.python,
      "-I",
      "-B",
      request.scriptName
    ]
    const [command, ...args] = argv
    const spawned = performance.now()
    const child = spawn(command ?? request.python, args, {
      cwd: request.cwd,
      env: minimalEnv(request.cwd),
      // A new session makes the child a process-group leader, so -pid reaches all its descendants.
      detached: true,
      // fd 3 carries the launcher's status; it also tells the launcher when we are gone.
      stdio: ["pipe", "pipe", "pipe", "pipe"]
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

    // Until the program starts only setup runs; it gets a bound of its own so a stuck setup cannot hang the run.
    let setupExpired = false
    let timer = setTimeout(() => {
      setupExpired = true
      stop("wall-timeout")
    }, limits.wallMs + SETUP_MS)
    let statusText = ""
    let startedAt: number | undefined
    const status = child.stdio[3] as Readable | null
    status?.on("data", (chunk: Buffer) => {
      statusText += chunk.toString("utf8")
      if (startedAt === undefined && statusText.startsWith("ready\n")) {
        startedAt = performance.now()
        clearTimeout(timer)
        if (ending === "exited") timer = setTimeout(() => stop("wall-timeout"), limits.wallMs)
      }
    })
    status?.on("error", () => {})
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
        status?.destroy()
      }, PIPE_GRACE_MS)
    })
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer)
      clearTimeout(grace)
      if (settled) return
      settled = true
      const launcher = parseStatus(statusText)
      const errors = Buffer.concat(stderr).toString("utf8")
      if (!launcher.ready && (ending === "exited" || setupExpired)) {
        const why = setupExpired
          ? `setup took over ${limits.wallMs + SETUP_MS} ms`
          : errors.trim().split("\n").pop() || (exitCode !== null ? `exit ${exitCode}` : `signal ${String(signal)}`)
        const under = request.isolation.prefix.length === 0 ? "" : ` under ${request.isolation.prefix.join(" ")}`
        resume(Effect.fail(new RunnerError({ message: `the program did not start${under}: ${why}` })))
        return
      }
      const own = launcher.ending ?? { exitCode, signal }
      resume(Effect.succeed({
        ending,
        exitCode: own.exitCode,
        signal: own.signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: errors,
        seconds: ((exitedAt ?? performance.now()) - (startedAt ?? spawned)) / 1000
      }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      killGroup(child.pid)
    })
  })
