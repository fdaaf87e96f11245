/**
 * Hostile programs against the evaluator: each tries one way out of a run
 * (a daemon that outlives it, killing the evaluator, reading its environment,
 * writing outside the working folder) and the test checks from outside that
 * it did not get there. Tests that need a namespace skip, saying why, where the
 * machine cannot create one; set CANOPY_REQUIRE_NAMESPACES=1 to make that a
 * failure instead (a machine that should have them).
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Effect, Fiber } from "effect"
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest"
import { type Evaluator, makeEvaluator } from "../src/pipeline/evaluate.ts"
import { describeIsolation } from "../src/pipeline/isolation.ts"
import type { Problem } from "../src/pipeline/problems.ts"
import { scaled } from "./limits.ts"
import { awaitMarker, eventually, heartbeat, isAlive, processesWith, startTagged, uniqueToken } from "./pipeline-processes.ts"

// These programs end by themselves: a wall clock scaled to the machine (CANOPY_TEST_TIMEOUT_SCALE) must not cut them short.
const LIMITS = { wallMs: scaled(1_500), cpuSeconds: 2, memoryBytes: 256 * 1024 * 1024, outputBytes: 16 * 1024 }

const REQUIRE_NAMESPACES = process.env["CANOPY_REQUIRE_NAMESPACES"] === "1"

let isolated: Evaluator
let unisolated: Evaluator
beforeAll(async () => {
  isolated = await Effect.runPromise(makeEvaluator({ limits: LIMITS }))
  unisolated = await Effect.runPromise(makeEvaluator({ limits: LIMITS, isolate: false }))
})

const expecting = (output: string): Problem => ({ id: "escape", question: "", tests: [{ input: "", output }] })

/** What the program printed, read back from a wrong-answer detail against empty expected output. */
const printed = (detail: string | undefined): string => {
  const shown = /got (".*")$/.exec(detail ?? "")?.[1]
  return shown === undefined ? "" : (JSON.parse(shown) as string)
}

/** Skips (or, with CANOPY_REQUIRE_NAMESPACES=1, fails) when the isolated evaluator lacks `what`. */
const needs = (ctx: TestContext, what: "pid" | "mount"): void => {
  if (isolated.isolation[what] !== "none") return
  const reason = `no ${what} namespace on this machine (${describeIsolation(isolated.isolation)}): ${isolated.isolation.note}`
  if (REQUIRE_NAMESPACES) throw new Error(`CANOPY_REQUIRE_NAMESPACES=1 but ${reason}`)
  ctx.skip(reason)
}

/** True when some canopy-eval-* folder still holds a file named `token`: a working folder left behind. */
const folderLeftWith = (token: string): boolean =>
  readdirSync(tmpdir()).some((name) => name.startsWith("canopy-eval-") && existsSync(join(tmpdir(), name, token)))

describe("isolation record", () => {
  it("names what each run gets, and why anything is missing", () => {
    const { network, pid, mount, note } = isolated.isolation
    expect(["netns", "netns-userns", "none"]).toContain(network)
    expect(["pidns", "pidns-userns", "none"]).toContain(pid)
    expect(["readonly", "readonly-userns", "none"]).toContain(mount)
    // The mount setup runs inside the PID namespace's launcher, so it never comes alone.
    if (mount !== "none") expect(pid).not.toBe("none")
    if (network === "none" || pid === "none" || mount === "none") expect(note).not.toBe("")
    if (REQUIRE_NAMESPACES) expect([pid, mount]).not.toContain("none")
    expect(describeIsolation(isolated.isolation)).toBe(`network ${network}, pid ${pid}, mount ${mount}`)
    expect(unisolated.isolation).toMatchObject({ network: "none", pid: "none", mount: "none", prefix: [] })
  })
})

describe("daemons", () => {
  const daemonPrograms = (token: string): ReadonlyArray<readonly [string, string]> => [
    [
      "double fork with setsid",
      [
        "import os, sys, time",
        "if os.fork() == 0:",
        "    os.setsid()",
        "    if os.fork() == 0:",
        `        os.execv(sys.executable, [sys.executable, '-c', ${JSON.stringify(heartbeat("beat"))}, ${JSON.stringify(token)}])`,
        "    os._exit(0)",
        "os.wait()",
        awaitMarker("beat")
      ].join("\n")
    ],
    [
      "Popen with start_new_session",
      ["import os, subprocess, sys, time", startTagged(token, heartbeat("beat"), "start_new_session=True"), awaitMarker("beat")]
        .join("\n")
    ]
  ]

  for (const index of [0, 1]) {
    it(`kills a daemon started by ${daemonPrograms("")[index]![0]} when the run ends`, async (ctx) => {
      needs(ctx, "pid")
      const token = uniqueToken("daemon")
      const [, program] = daemonPrograms(token)[index]!
      const result = await Effect.runPromise(isolated.evaluate(expecting("started"), program))
      // The daemon was up and beating when the program ended...
      expect(result.verdicts[0]).toMatchObject({ verdict: "passed" })
      // ...and nothing carrying its token is left on the host.
      expect(await eventually(() => processesWith(token).length === 0, 2_000)).toBe(true)
    })
  }

  it("without namespaces, the process group still takes the program's plain children along", async () => {
    const token = uniqueToken("fallback-child")
    const program = ["import os, subprocess, sys, time", startTagged(token, heartbeat("beat")), awaitMarker("beat")].join("\n")
    const result = await Effect.runPromise(unisolated.evaluate(expecting("started"), program))
    expect(result.verdicts[0]).toMatchObject({ verdict: "passed" })
    expect(await eventually(() => processesWith(token).length === 0, 2_000)).toBe(true)
  })

  it("without namespaces, a child that left the process group outlives the run (documented, not prevented)", async () => {
    const token = uniqueToken("fallback-daemon")
    const program = ["import os, subprocess, sys, time", startTagged(token, heartbeat("beat"), "start_new_session=True"), awaitMarker("beat")]
      .join("\n")
    const started = performance.now()
    const result = await Effect.runPromise(unisolated.evaluate(expecting("started"), program))
    try {
      expect(result.verdicts[0]).toMatchObject({ verdict: "passed" })
      expect(processesWith(token).length).toBe(1)
      // It holds the output pipes open, yet the run does not wait for it past a short grace.
      expect(performance.now() - started).toBeLessThan(LIMITS.wallMs)
    } finally {
      for (const pid of processesWith(token)) process.kill(pid, "SIGKILL")
    }
  })
})

describe("signals at the evaluator", () => {
  const hostNamespace = readlinkSync("/proc/self/ns/pid")
  // Each first leaves a file named by its token in its working folder, so a folder left behind can be found.
  const mark = (token: string) => `import os, signal\nopen(${JSON.stringify(token)}, 'w').close()\n`
  // The last field: whether, in a PID namespace, the program itself lives on (its parent, the init, ignores the signals).
  type Attack = readonly [string, (token: string) => string, boolean]
  const ATTACKS: ReadonlyArray<Attack> = [
    ["os.kill(os.getppid(), 9)", (t) => `${mark(t)}os.kill(os.getppid(), 9)\nprint('alive')`, true],
    [
      "every common signal to the parent",
      (t) =>
        `${mark(t)}for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL):\n` +
        `    os.kill(os.getppid(), s)\nprint('alive')`,
      true
    ],
    // Inside the namespace the init's group is out of sight (pgid 0), so this hits the program's own group.
    ["the parent's process group", (t) => `${mark(t)}os.killpg(os.getpgid(os.getppid()), 9)\nprint('alive')`, false],
    ["os.killpg(0, 9)", (t) => `${mark(t)}os.killpg(0, 9)`, false]
  ]
  const KILL_ALL: Attack = [
    "os.kill(-1, 9)",
    // Refuses to run outside a PID namespace of its own: as root there it would kill every process on the machine.
    // A child of its own gives kill(-1) something to hit (with nothing else to signal it fails with ESRCH); -9 shows it did.
    (t) =>
      `${mark(t)}import subprocess\nif os.readlink('/proc/self/ns/pid') == ${JSON.stringify(hostNamespace)}:\n` +
      `    print('not isolated')\nelse:\n    child = subprocess.Popen(['sleep', '600'])\n    os.kill(-1, 9)\n` +
      `    print('alive', child.wait())`,
    true
  ]

  const survives = async (evaluator: Evaluator, withKillAll: boolean) => {
    // A process of ours outside the run: whatever the program kills beyond its own run shows up here.
    const canary = spawn("sleep", ["600"], { stdio: "ignore" })
    try {
      for (const [name, program, livesOn] of withKillAll ? [...ATTACKS, KILL_ALL] : ATTACKS) {
        const token = uniqueToken("signals")
        const result = await Effect.runPromise(evaluator.evaluate(expecting(""), program(token)))
        expect({ name, verdicts: result.verdicts.length }).toEqual({ name, verdicts: 1 })
        expect({ name, left: folderLeftWith(token) }).toEqual({ name, left: false })
        expect({ name, canary: isAlive(canary.pid!) }).toEqual({ name, canary: true })
        if (evaluator.isolation.pid !== "none") {
          // Either it carried on, or it got as far as killing its own group.
          const shown = livesOn ? printed(result.verdicts[0]?.detail) : result.verdicts[0]?.detail
          const expected = !livesOn ? "signal SIGKILL" : name === KILL_ALL[0] ? "alive -9" : "alive"
          expect({ name, shown }).toEqual({ name, shown: expected })
        }
      }
    } finally {
      canary.kill("SIGKILL")
    }
  }

  it("survives whatever the program signals inside a PID namespace, os.kill(-1, 9) as root included", async (ctx) => {
    needs(ctx, "pid")
    await survives(isolated, true)
  })

  it("survives signals to the parent and its group without namespaces too", async () => {
    await survives(unisolated, false)
  })
})

describe("the parent's environment", () => {
  it("cannot be read through /proc, while it can without namespaces", async (ctx) => {
    needs(ctx, "pid")
    // /proc/PID/environ shows the environment a process was started with, so the secret must be there from the start:
    // the evaluator runs in a child process that is started with it.
    const secret = uniqueToken("secret")
    const program = [
      "import os",
      "found = []",
      "try:",
      "    parent = 'parent %d readable' % os.getppid() if open('/proc/%d/environ' % os.getppid(), 'rb').read() else ''",
      "except OSError as error:",
      "    parent = 'parent %d %s' % (os.getppid(), error.strerror)",
      "# The parent, its ancestors and anything else this /proc shows.",
      "for pid in filter(str.isdigit, os.listdir('/proc')):",
      "    try:",
      "        for entry in open('/proc/%s/environ' % pid, 'rb').read().split(b'\\0'):",
      "            if entry.startswith(b'CANOPY_ESCAPE_SECRET='):",
      "                found.append(entry.decode())",
      "    except OSError:",
      "        pass",
      "print(parent, sorted(set(found)))"
    ].join("\n")
    const script = [
      `import { Effect } from "effect"`,
      `import { makeEvaluator } from ${JSON.stringify(resolve(import.meta.dirname, "../src/pipeline/evaluate.ts"))}`,
      `const problem = { id: "env", question: "", tests: [{ input: "", output: "" }] }`,
      `const shown = []`,
      `for (const isolate of [true, false]) {`,
      `  const evaluator = await Effect.runPromise(makeEvaluator({ isolate, limits: ${JSON.stringify(LIMITS)} }))`,
      `  const result = await Effect.runPromise(evaluator.evaluate(problem, ${JSON.stringify(program)}))`,
      `  shown.push(result.verdicts[0]?.detail ?? "")`,
      `}`,
      `console.log(JSON.stringify(shown))`
    ].join("\n")
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: resolve(import.meta.dirname, ".."),
      env: { ...process.env, CANOPY_ESCAPE_SECRET: secret },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    const code = await new Promise<number | null>((done) => child.on("close", done))
    expect({ code, stderr: Buffer.concat(err).toString() }).toMatchObject({ code: 0 })
    const [inside, without] = JSON.parse(Buffer.concat(out).toString()) as [string, string]
    // Without namespaces the program finds the secret in an ancestor: the check can see a leak...
    expect(printed(without)).toContain(`CANOPY_ESCAPE_SECRET=${secret}`)
    // ...and in a PID namespace it sees neither the evaluator nor its environment.
    expect(printed(inside)).not.toContain(secret)
    expect(printed(inside)).toMatch(/ \[\]$/)
  })
})

describe("writes outside the working folder", () => {
  let outside: string
  beforeAll(() => {
    outside = mkdtempSync(join(tmpdir(), "canopy-test-outside-"))
    writeFileSync(join(outside, "keep.txt"), "original")
  })
  afterAll(() => rmSync(outside, { recursive: true, force: true }))

  it("fail with a read-only file system, and the program cannot make it writable again", async (ctx) => {
    needs(ctx, "mount")
    const at = (name: string) => JSON.stringify(join(outside, name))
    const program = [
      "import ctypes, errno, os",
      "libc = ctypes.CDLL(None, use_errno=True)",
      "def remount():",
      "    # MS_REMOUNT | MS_BIND without MS_RDONLY: make / writable again",
      "    if libc.mount(None, b'/', None, ctypes.c_ulong(32 | 4096), None) != 0:",
      "        raise OSError(ctypes.get_errno(), 'mount')",
      "attempts = [",
      `    ('create', lambda: open(${at("new.txt")}, 'w').write('x')),`,
      `    ('overwrite', lambda: open(${at("keep.txt")}, 'w').write('changed')),`,
      `    ('delete', lambda: os.remove(${at("keep.txt")})),`,
      `    ('mkdir', lambda: os.mkdir(${at("folder")})),`,
      "    ('remount', remount),",
      "    ('inside', lambda: open('inside.txt', 'w').write('ok')),",
      "]",
      "results = []",
      "for name, attempt in attempts:",
      "    try:",
      "        attempt()",
      "        results.append(name + ' ok')",
      "    except OSError as error:",
      "        results.append(name + ' ' + errno.errorcode.get(error.errno, str(error.errno)))",
      "print(', '.join(results))"
    ].join("\n")
    const result = await Effect.runPromise(isolated.evaluate(expecting(""), program))
    expect(printed(result.verdicts[0]?.detail)).toBe(
      "create EROFS, overwrite EROFS, delete EROFS, mkdir EROFS, remount EPERM, inside ok"
    )
    expect(readFileSync(join(outside, "keep.txt"), "utf8")).toBe("original")
    expect(readdirSync(outside)).toEqual(["keep.txt"])
  })

  it("succeed without namespaces (documented, not prevented)", async () => {
    const program = `open(${JSON.stringify(join(outside, "fallback.txt"))}, 'w').write('x')\nprint('written')`
    const result = await Effect.runPromise(unisolated.evaluate(expecting("written"), program))
    expect(result.passed).toBe(true)
    expect(readFileSync(join(outside, "fallback.txt"), "utf8")).toBe("x")
    rmSync(join(outside, "fallback.txt"))
  })

  it("leave /dev/null, /dev/shm and multiprocessing usable, and no disks in /dev", async (ctx) => {
    needs(ctx, "mount")
    const program = [
      "import multiprocessing, os, subprocess",
      "subprocess.run(['true'], stdout=subprocess.DEVNULL, check=True)",
      "open(os.devnull, 'w').write('discarded')",
      "open('/dev/shm/scratch', 'w').write('x')",
      "queue = multiprocessing.Queue()",
      "queue.put(7)",
      "print(queue.get(), sorted(os.listdir('/dev')), os.listdir('/run'))"
    ].join("\n")
    const result = await Effect.runPromise(isolated.evaluate(expecting(""), program))
    expect(printed(result.verdicts[0]?.detail)).toBe(
      "7 ['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'] []"
    )
  })
})

describe("an evaluator that dies", () => {
  it("takes its runs along, with or without namespaces", async () => {
    const tokens = [uniqueToken("orphaned-isolated"), uniqueToken("orphaned-unisolated")]
    // Starts one run per level and then waits; killed with SIGKILL it gets no chance to clean up.
    // The tokens reach it through its environment: on its own command line, it would be the process found by them.
    const script = [
      `import { Effect } from "effect"`,
      `import { makeEvaluator } from ${JSON.stringify(resolve(import.meta.dirname, "../src/pipeline/evaluate.ts"))}`,
      `const problem = { id: "dies", question: "", tests: [{ input: "", output: "" }] }`,
      `const limits = { wallMs: 600000 }`,
      `const program = (token) => "import os, sys\\nos.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', '" + token + "'])"`,
      `const [first, second] = process.env.CANOPY_TEST_TOKENS.split(" ")`,
      `const isolated = await Effect.runPromise(makeEvaluator({ limits }))`,
      `const unisolated = await Effect.runPromise(makeEvaluator({ limits, isolate: false }))`,
      `Effect.runFork(isolated.evaluate(problem, program(first)))`,
      `Effect.runFork(unisolated.evaluate(problem, program(second)))`,
      `setInterval(() => {}, 1000)`
    ].join("\n")
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: resolve(import.meta.dirname, ".."),
      env: { ...process.env, CANOPY_TEST_TOKENS: tokens.join(" ") },
      stdio: ["ignore", "ignore", "inherit"]
    })
    try {
      expect(await eventually(() => tokens.every((token) => processesWith(token).length > 0), 10_000)).toBe(true)
    } finally {
      child.kill("SIGKILL")
    }
    expect(await eventually(() => tokens.every((token) => processesWith(token).length === 0), 2_000)).toBe(true)
    // Its working folders stay behind (documented): nothing of it is left to remove them, so the test does.
    const left = readdirSync(tmpdir()).filter((name) => {
      try {
        const program = readFileSync(join(tmpdir(), name, "solution.py"), "utf8")
        return name.startsWith("canopy-eval-") && tokens.some((token) => program.includes(token))
      } catch {
        return false
      }
    })
    for (const name of left) rmSync(join(tmpdir(), name), { recursive: true, force: true })
    expect(left).toHaveLength(2)
  })
})

describe("working folders", () => {
  it("are removed after interruption, also when the program locked its own folders", async () => {
    const token = uniqueToken("locked")
    // Leaves an unreadable folder behind, then sleeps until the evaluation is interrupted.
    const program = [
      "import os, sys",
      "os.makedirs('a/b')",
      "open('a/b/f', 'w').write('x')",
      "os.chmod('a/b', 0)",
      "os.chmod('a', 0)",
      `open(${JSON.stringify(token)}, 'w').close()`,
      `os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', ${JSON.stringify(token)}])`
    ].join("\n")
    const fiber = Effect.runFork(isolated.evaluate(expecting(""), program))
    expect(await eventually(() => processesWith(token).length > 0)).toBe(true)
    expect(folderLeftWith(token)).toBe(true)
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(await eventually(() => processesWith(token).length === 0, 2_000)).toBe(true)
    expect(folderLeftWith(token)).toBe(false)
  }, scaled(20_000))
})
