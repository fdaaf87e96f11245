import { readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { type Evaluator, makeEvaluator, normalizeOutput, outputsMatch } from "../src/pipeline/evaluate.ts"
import type { Problem } from "../src/pipeline/problems.ts"

const sumProblem: Problem = {
  id: "sum",
  question: "Print a + b.",
  tests: [{ input: "2 3\n", output: "5" }, { input: "10 -4\n", output: "6\n" }]
}

// Expects empty output, so any output shows up in the wrong-answer detail.
const emptyProblem: Problem = { id: "empty", question: "", tests: [{ input: "", output: "" }] }

const LIMITS = { wallMs: 1_500, cpuSeconds: 1, memoryBytes: 128 * 1024 * 1024, outputBytes: 16 * 1024 }

let evaluator: Evaluator
beforeAll(async () => {
  evaluator = await Effect.runPromise(makeEvaluator({ limits: LIMITS }))
})

const run = (program: string, problem: Problem = sumProblem) => Effect.runPromise(evaluator.evaluate(problem, program))

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // A killed child re-parented to a non-reaping init lingers as a zombie: dead for our purposes.
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

const evalFolders = () => readdirSync(tmpdir()).filter((name) => name.startsWith("canopy-eval-"))

describe("output comparison", () => {
  it("ignores trailing spaces per line and trailing newlines only", () => {
    expect(normalizeOutput("1 2  \r\n3\t\n\n\n")).toBe("1 2\n3")
    expect(outputsMatch("5\n", "5")).toBe(true)
    expect(outputsMatch(" 5", "5")).toBe(false)
    expect(outputsMatch("1\n\n2", "1\n2")).toBe(false)
  })
})

describe("evaluator verdicts", () => {
  it("passes a correct program on every test", async () => {
    const result = await run("a, b = map(int, input().split())\nprint(a + b)")
    expect(result.passed).toBe(true)
    expect(result.verdicts.map((v) => v.verdict)).toEqual(["passed", "passed"])
  })

  it("reports a wrong answer with what was expected, and stops at the first failing test", async () => {
    const result = await run("print(5)")
    expect(result.passed).toBe(false)
    expect(result.verdicts.map((v) => v.verdict)).toEqual(["passed", "wrong-answer"])
    expect(result.verdicts[1]?.detail).toContain('expected "6"')
  })

  it("treats a syntax error as a runtime error naming it", async () => {
    const result = await run("print(")
    expect(result.verdicts[0]?.verdict).toBe("runtime-error")
    expect(result.verdicts[0]?.detail).toContain("SyntaxError")
  })

  it("treats an exception as a runtime error", async () => {
    const result = await run("raise ValueError('boom')")
    expect(result.verdicts[0]).toMatchObject({ verdict: "runtime-error" })
    expect(result.verdicts[0]?.detail).toContain("ValueError: boom")
  })

  it("stops a busy loop at a time limit (CPU or wall clock, whichever comes first under load)", async () => {
    const started = performance.now()
    const result = await run("while True:\n    pass")
    expect(result.verdicts[0]?.verdict).toBe("time-limit")
    expect(performance.now() - started).toBeLessThan(LIMITS.wallMs + 1_000)
  })

  it("stops a sleeping program at the wall-clock limit", async () => {
    const started = performance.now()
    const result = await run("import time\ntime.sleep(60)")
    expect(result.verdicts[0]).toMatchObject({ verdict: "time-limit" })
    expect(result.verdicts[0]?.detail).toContain("wall clock")
    expect(performance.now() - started).toBeLessThan(LIMITS.wallMs + 1_000)
  })

  it("reports unbounded allocation as a memory limit", async () => {
    const result = await run("chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))")
    expect(result.verdicts[0]?.verdict).toBe("memory-limit")
  })

  it("stops a program printing forever at the output cap", async () => {
    const result = await run("while True:\n    print('y' * 80)")
    expect(result.verdicts[0]?.verdict).toBe("output-limit")
  })

  it("kills children the program started, with the whole process group", async () => {
    // The filesystem is shared (see ISOLATION.md), so the program can hand us its child's pid through a file.
    const pidFile = join(tmpdir(), `canopy-test-child-${process.pid}.pid`)
    const spawnAndSpin = [
      "import subprocess",
      "child = subprocess.Popen(['sleep', '30'])",
      `open(${JSON.stringify(pidFile)}, 'w').write(str(child.pid))`,
      "while True:",
      "    pass"
    ].join("\n")
    const spinning = await Effect.runPromise(evaluator.evaluate(emptyProblem, spawnAndSpin))
    expect(spinning.verdicts[0]?.verdict).toBe("time-limit")
    const spinningChild = Number(readFileSync(pidFile, "utf8"))
    rmSync(pidFile)

    // Same, but the program exits at once and leaves its child behind.
    const spawnAndExit = "import subprocess\nprint(subprocess.Popen(['sleep', '30']).pid)"
    const exited = await Effect.runPromise(evaluator.evaluate(emptyProblem, spawnAndExit))
    const exitedChild = Number(/got "(\d+)"/.exec(exited.verdicts[0]?.detail ?? "")?.[1])

    expect(spinningChild).toBeGreaterThan(0)
    expect(exitedChild).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(isAlive(spinningChild)).toBe(false)
    expect(isAlive(exitedChild)).toBe(false)
  })

  it("does not wait for a child that left the process group (documented, not prevented)", async () => {
    const escape = "import subprocess\nprint(subprocess.Popen(['sleep', '30'], start_new_session=True).pid)"
    const started = performance.now()
    const result = await Effect.runPromise(evaluator.evaluate(emptyProblem, escape))
    expect(performance.now() - started).toBeLessThan(2_000)
    const escaped = Number(/got "(\d+)"/.exec(result.verdicts[0]?.detail ?? "")?.[1])
    expect(escaped).toBeGreaterThan(0)
    expect(isAlive(escaped)).toBe(true)
    process.kill(escaped, "SIGKILL")
  })

  it("kills the program when the evaluation is interrupted", async () => {
    const pidFile = join(tmpdir(), `canopy-test-leader-${process.pid}.pid`)
    const program = `import os, time\nopen(${JSON.stringify(pidFile)}, 'w').write(str(os.getpid()))\ntime.sleep(30)`
    const outcome = await Effect.runPromise(
      evaluator.evaluate(emptyProblem, program).pipe(Effect.timeoutOption("400 millis"))
    )
    expect(outcome._tag).toBe("None")
    const leader = Number(readFileSync(pidFile, "utf8"))
    rmSync(pidFile)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(isAlive(leader)).toBe(false)
  })

  it("does not stop a program reading a file outside its working folder (documented, not prevented)", async () => {
    const problem: Problem = { id: "read", question: "", tests: [{ input: "", output: "root" }] }
    const result = await Effect.runPromise(
      evaluator.evaluate(problem, "print(open('/etc/passwd').read().split(':')[0])")
    )
    expect(result.passed).toBe(true)
  })

  it("runs with the network cut off when a network namespace is available", async () => {
    const connect = [
      "import socket",
      "try:",
      "    socket.create_connection(('1.1.1.1', 53), timeout=1).close()",
      "    print('connected')",
      "except OSError as error:",
      "    print('blocked')"
    ].join("\n")
    const problem: Problem = { id: "net", question: "", tests: [{ input: "", output: "blocked" }] }
    const result = await Effect.runPromise(evaluator.evaluate(problem, connect))
    if (evaluator.isolation.network === "none") {
      // Without a namespace the outcome depends on the host; only check it ran.
      expect(result.verdicts).toHaveLength(1)
    } else {
      expect(result.passed).toBe(true)
    }
  })

  it("gives the program a minimal environment and a fresh working folder, removed afterwards", async () => {
    const before = new Set(evalFolders())
    const program = [
      "import os",
      "print(sorted(os.environ))",
      "print(os.listdir('.'))",
      "print(os.getcwd() == os.environ['HOME'])"
    ].join("\n")
    const result = await Effect.runPromise(evaluator.evaluate(emptyProblem, program))
    const shown = result.verdicts[0]?.detail ?? ""
    expect(shown).toContain("['solution.py']")
    expect(shown).toContain("True")
    expect(shown).not.toMatch(/NODE|VITEST|npm_/)
    expect(evalFolders().filter((name) => !before.has(name))).toEqual([])
  })

  it("evaluates many samples with bounded concurrency, keeping their order", async () => {
    const programs = ["print(5)", "a, b = map(int, input().split())\nprint(a + b)", "print("]
    const results = await Effect.runPromise(
      evaluator.evaluateAll(programs.map((program) => ({ problem: sumProblem, program })))
    )
    expect(results.map((r) => r.passed)).toEqual([false, true, false])
  })
})

// Reference solutions check the built-in tests themselves, and the evaluator on realistic programs.
const REFERENCE_SOLUTIONS: Record<string, string> = {
  "canopy-sum-two": "a, b = map(int, input().split())\nprint(a + b)",
  "canopy-reverse-string": "print(input()[::-1])",
  "canopy-count-vowels": "print(sum(ch in 'aeiouAEIOU' for ch in input()))",
  "canopy-fizzbuzz": [
    "for i in range(1, int(input()) + 1):",
    "    print('FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else i)"
  ].join("\n"),
  "canopy-max-of-list": "input()\nprint(max(map(int, input().split())))",
  "canopy-palindrome": "w = input().strip()\nprint('YES' if w == w[::-1] else 'NO')",
  "canopy-gcd": "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))",
  "canopy-running-sum": [
    "import itertools",
    "input()",
    "print(' '.join(map(str, itertools.accumulate(map(int, input().split())))))"
  ].join("\n"),
  "canopy-word-count": "print(len(input().split()))",
  "canopy-second-largest": "input()\nprint(sorted(set(map(int, input().split())))[-2])"
}

describe("built-in problems", () => {
  it("has about ten problems, each with a reference solution that passes every test", async () => {
    expect(BUILTIN_PROBLEMS.length).toBeGreaterThanOrEqual(10)
    const items = BUILTIN_PROBLEMS.map((problem) => ({ problem, program: REFERENCE_SOLUTIONS[problem.id] ?? "" }))
    const results = await Effect.runPromise(evaluator.evaluateAll(items))
    expect(results.map((r, i) => [BUILTIN_PROBLEMS[i]?.id, r.passed])).toEqual(
      BUILTIN_PROBLEMS.map((p) => [p.id, true])
    )
    for (const problem of BUILTIN_PROBLEMS) {
      expect(problem.tests.length).toBeGreaterThanOrEqual(2)
      expect(problem.tests.length).toBeLessThanOrEqual(3)
    }
  })
})
