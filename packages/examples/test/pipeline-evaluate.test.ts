import { existsSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { type Evaluator, makeEvaluator, normalizeOutput, outputsMatch } from "../src/pipeline/evaluate.ts"
import type { Problem } from "../src/pipeline/problems.ts"
import { scaled } from "./limits.ts"
import { eventually, processesWith, startTagged, uniqueToken } from "./pipeline-processes.ts"

const sumProblem: Problem = {
  id: "sum",
  question: "Print a + b.",
  tests: [{ input: "2 3\n", output: "5" }, { input: "10 -4\n", output: "6\n" }]
}

// Expects empty output, so any output shows up in the wrong-answer detail.
const emptyProblem: Problem = { id: "empty", question: "", tests: [{ input: "", output: "" }] }

// Programs that must finish get a wall clock scaled to the machine (CANOPY_TEST_TIMEOUT_SCALE): a busy one starts Python slowly.
const LIMITS = { wallMs: scaled(1_500), cpuSeconds: 1, memoryBytes: 128 * 1024 * 1024, outputBytes: 16 * 1024 }
// Programs meant to be stopped by the wall clock get a tight one: a slow machine only stops them sooner.
const TIGHT = { ...LIMITS, wallMs: 1_500 }
// Children the programs start outlive every limit of the test by far, so one found dead was killed, not finished.
const CHILD_SECONDS = Math.ceil(scaled(30_000) / 1000)

let evaluator: Evaluator
let tight: Evaluator
beforeAll(async () => {
  evaluator = await Effect.runPromise(makeEvaluator({ limits: LIMITS }))
  tight = await Effect.runPromise(makeEvaluator({ limits: TIGHT }))
})

const run = (program: string, problem: Problem = sumProblem, using: Evaluator = evaluator) =>
  Effect.runPromise(using.evaluate(problem, program))

/** True when some canopy-eval-* folder still holds a file named `token`: a working folder left behind. */
const folderLeftWith = (token: string): boolean =>
  readdirSync(tmpdir()).some((name) => name.startsWith("canopy-eval-") && existsSync(join(tmpdir(), name, token)))

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
    const result = await run("while True:\n    pass", sumProblem, tight)
    expect(result.verdicts[0]?.verdict).toBe("time-limit")
    expect(performance.now() - started).toBeLessThan(TIGHT.wallMs + scaled(1_000))
  })

  it("stops a sleeping program at the wall-clock limit", async () => {
    const started = performance.now()
    const result = await run("import time\ntime.sleep(60)", sumProblem, tight)
    expect(result.verdicts[0]).toMatchObject({ verdict: "time-limit" })
    expect(result.verdicts[0]?.detail).toContain("wall clock")
    expect(performance.now() - started).toBeLessThan(TIGHT.wallMs + scaled(1_000))
  })

  it("reports unbounded allocation as a memory limit", async () => {
    const result = await run("chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))")
    expect(result.verdicts[0]?.verdict).toBe("memory-limit")
  })

  it("stops a program printing forever at the output cap", async () => {
    const result = await run("while True:\n    print('y' * 80)")
    expect(result.verdicts[0]?.verdict).toBe("output-limit")
  })

  // Inside a PID namespace the program's pids mean nothing here: its children are found by a token on their command line.
  it("kills children the program started, whether it spins or exits", async () => {
    const start = (token: string) =>
      ["import os, subprocess, sys, time", startTagged(token, `import time; time.sleep(${CHILD_SECONDS})`), ""].join("\n")
    const spinner = uniqueToken("spinner-child")
    // stopped by its CPU limit, not the tight wall clock: a busy machine could end it before it starts the child
    const spinning = Effect.runPromise(evaluator.evaluate(emptyProblem, `${start(spinner)}while True:\n    pass`))
    // Seen while the program runs, so "gone" afterwards cannot be a child that never started.
    expect(await eventually(() => processesWith(spinner).length > 0)).toBe(true)
    expect((await spinning).verdicts[0]?.verdict).toBe("time-limit")
    expect(await eventually(() => processesWith(spinner).length === 0, 2_000)).toBe(true)

    // Same, but the program exits at once and leaves its child behind (Popen returns once the child has exec'd).
    const orphan = uniqueToken("orphan-child")
    const exiting = Effect.runPromise(evaluator.evaluate(emptyProblem, `${start(orphan)}print('started')`))
    expect((await exiting).verdicts[0]?.detail).toContain('got "started"')
    expect(await eventually(() => processesWith(orphan).length === 0, 2_000)).toBe(true)
  })

  it("kills the program when the evaluation is interrupted, and removes its folder", async () => {
    const token = uniqueToken("interrupted")
    const program = [
      "import os, sys",
      `open(${JSON.stringify(token)}, 'w').close()`,
      `os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(${CHILD_SECONDS})', ${JSON.stringify(token)}])`
    ].join("\n")
    const fiber = Effect.runFork(evaluator.evaluate(emptyProblem, program))
    // interrupted once the program runs, however long the machine takes to start it
    expect(await eventually(() => processesWith(token).length > 0)).toBe(true)
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(await eventually(() => processesWith(token).length === 0, 2_000)).toBe(true)
    expect(folderLeftWith(token)).toBe(false)
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
    // The program leaves a file named by the token, so its folder is told apart from other files' runs in parallel.
    const token = uniqueToken("fresh")
    const program = [
      "import os",
      "print(sorted(os.environ))",
      "print(os.listdir('.'))",
      "print(os.getcwd() == os.environ['HOME'])",
      `open(${JSON.stringify(token)}, 'w').close()`
    ].join("\n")
    const result = await Effect.runPromise(evaluator.evaluate(emptyProblem, program))
    const shown = result.verdicts[0]?.detail ?? ""
    expect(shown).toContain("['solution.py']")
    expect(shown).toContain("True")
    expect(shown).not.toMatch(/NODE|VITEST|npm_/)
    expect(folderLeftWith(token)).toBe(false)
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
