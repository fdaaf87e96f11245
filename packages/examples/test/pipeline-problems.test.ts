import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it, onTestFinished } from "vitest"
import { BUILTIN_PROBLEMS } from "../src/pipeline/data/builtin-problems.ts"
import { parseProblemsJsonl, readProblemsFile } from "../src/pipeline/problems.ts"
import { extractProgram, FEW_SHOT_PROMPT, renderProblemPrompt } from "../src/pipeline/prompt.ts"

const parse = (text: string) => Effect.runPromise(parseProblemsJsonl(text, "problems.jsonl"))
const parseError = (text: string) => Effect.runPromise(Effect.flip(parseProblemsJsonl(text, "problems.jsonl")))

describe("APPS JSONL reader", () => {
  it("accepts input_output as an object or as a JSON string, ignoring extra fields", async () => {
    const lines = [
      JSON.stringify({ problem_id: 7, question: "Q1", input_output: { inputs: ["1\n"], outputs: ["2\n"] }, difficulty: "intro" }),
      "",
      JSON.stringify({
        problem_id: "b",
        question: "Q2",
        solutions: "[]",
        input_output: JSON.stringify({ inputs: ["x", "y"], outputs: [["1", "2"], "3"] })
      })
    ]
    const problems = await parse(lines.join("\n"))
    expect(problems).toEqual([
      { id: "7", question: "Q1", tests: [{ input: "1\n", output: "2\n" }] },
      { id: "b", question: "Q2", tests: [{ input: "x", output: "1\n2" }, { input: "y", output: "3" }] }
    ])
  })

  it("names the line of a malformed record", async () => {
    const good = JSON.stringify({ problem_id: 1, question: "Q", input_output: { inputs: ["1"], outputs: ["1"] } })
    const error = await parseError([good, "", JSON.stringify({ problem_id: 2, question: 3, input_output: "{}" })].join("\n"))
    expect(error._tag).toBe("ProblemLineError")
    expect(error.line).toBe(3)
    expect(error.source).toBe("problems.jsonl")
    expect(error.message).toContain("question")
  })

  it("rejects broken JSON, broken embedded JSON, mismatched tests and duplicates", async () => {
    const record = (input_output: unknown, problem_id: unknown = 1) => JSON.stringify({ problem_id, question: "Q", input_output })
    expect((await parseError("{not json")).line).toBe(1)
    expect((await parseError(record("{bad"))).message).toMatch(/input_output/)
    expect((await parseError(record({ inputs: ["1"], outputs: [] }))).message).toContain("1 inputs but 0 outputs")
    expect((await parseError(record({ inputs: [], outputs: [] }))).message).toContain("no tests")
    const ok = record({ inputs: ["1"], outputs: ["1"] })
    expect((await parseError(`${ok}\n${ok}`)).message).toContain("duplicate problem_id 1")
  })

  it("reads a file, and reports a missing one as a file error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-problems-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, "p.jsonl")
    writeFileSync(path, `${JSON.stringify({ problem_id: 1, question: "Q", input_output: { inputs: ["a"], outputs: ["b"] } })}\n`)
    expect(await Effect.runPromise(readProblemsFile(path))).toHaveLength(1)
    const missing = await Effect.runPromise(Effect.flip(readProblemsFile(join(dir, "missing.jsonl"))))
    expect(missing._tag).toBe("ProblemFileError")
    // Node's own message, without the "Error: " String() would put before it
    expect(missing.message).toBe(`ENOENT: no such file or directory, open '${join(dir, "missing.jsonl")}'`)
  })

  it("refuses a file with no problems: empty, or blank lines only", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-problems-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const empty = join(dir, "empty.jsonl")
    const blank = join(dir, "blank.jsonl")
    writeFileSync(empty, "")
    writeFileSync(blank, "\n   \n\t\n")
    const tail = "a problems file needs at least one problem, one APPS-style JSON record per line"
    const errors = await Promise.all([empty, blank].map((path) => Effect.runPromise(Effect.flip(readProblemsFile(path)))))
    expect(errors.map((e) => [e._tag, e.message])).toEqual([
      ["ProblemFileError", `${empty} is empty: ${tail}`],
      ["ProblemFileError", `${blank} holds only blank lines (3): ${tail}`]
    ])
  })
})

describe("prompt", () => {
  it("shares two worked examples in the QUESTION / ANSWER format", () => {
    expect(FEW_SHOT_PROMPT.match(/QUESTION:\n/g)).toHaveLength(2)
    expect(FEW_SHOT_PROMPT.match(/ANSWER:\n```python\n[\s\S]*?\n```\n/g)).toHaveLength(2)
  })

  it("renders a problem node that opens a python fence, optionally with examples", () => {
    const problem = BUILTIN_PROBLEMS[0]
    if (problem === undefined) throw new Error("no built-in problems")
    const node = renderProblemPrompt(problem)
    expect(node).toBe(`\nQUESTION:\n${problem.question}\nANSWER:\n\`\`\`python\n`)
    const withExample = renderProblemPrompt(problem, { examples: 1 })
    expect(withExample).toContain("Example input:\n2 3\nExample output:\n5")
    expect(withExample).not.toContain("-7 7")
  })
})

describe("extractProgram", () => {
  it("takes code up to the closing fence when the prompt opened it", () => {
    expect(extractProgram("print(1)\n```\n\nQUESTION:\nmore")).toBe("print(1)")
  })

  it("takes the body of a complete fenced block, tagged or bare", () => {
    expect(extractProgram("Here it is:\n```python\nx = 1\nprint(x)\n```\ntrailing")).toBe("x = 1\nprint(x)")
    expect(extractProgram("```\nprint(2)\n```")).toBe("print(2)")
    expect(extractProgram("```py\r\nprint(3)\r\n")).toBe("print(3)")
  })

  it("keeps raw code, cut where the model starts another question", () => {
    expect(extractProgram("\n\nfor i in range(3):\n    print(i)\n\nQUESTION:\nnext")).toBe("for i in range(3):\n    print(i)")
    expect(extractProgram("    x = 1")).toBe("    x = 1")
    expect(extractProgram("")).toBe("")
  })
})
