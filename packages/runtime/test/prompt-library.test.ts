/**
 * The prompt-tree library: requests planned from a tree, completions grouped
 * by node, and a session whose second run finds the shared prefix cached.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { prompt } from "../src/prompt/PromptNode.ts"
import { planRequests } from "../src/prompt/requests.ts"
import { openSession, type Session } from "../src/prompt/session.ts"

// A few-shot prefix of the usual shape: an instruction and a worked problem.
const FEW_SHOT_PROMPT = [
  "Solve each programming problem with a Python 3 program that reads from standard input and writes to standard output.\n",
  "QUESTION:\nThe first line holds n. The second line holds n integers. Print the sum of the even ones.\n",
  "ANSWER:\n```python\nn = int(input())\nvalues = list(map(int, input().split()))\nprint(sum(v for v in values if v % 2 == 0))\n```\n"
].join("\n")

describe("planning requests", () => {
  it("groups nodes by sampling settings and prunes each request to its nodes' branches", () => {
    const root = prompt("shared")
    const a = root.child("a").sample(2)
    root.child("idle")
    const b = root.child("b").sample(1, { maxTokens: 4 })
    const c = b.child("c").sample(3)
    const requests = planRequests(root, { temperature: 0.5 })
    expect(requests.map((r) => r.sampling)).toEqual([{ temperature: 0.5 }, { temperature: 0.5, maxTokens: 4 }])
    const [first, second] = requests
    expect(first!.tree).toEqual({
      text: "shared",
      children: [{ text: "a", samples: 2 }, { text: "b", children: [{ text: "c", samples: 3 }] }]
    })
    expect([...first!.nodes]).toEqual([["0", a], ["1/0", c]])
    expect(second!.tree).toEqual({ text: "shared", children: [{ text: "b", samples: 1 }] })
    expect([...second!.nodes]).toEqual([["0", b]])
  })

  it("refuses a negative or fractional sample count", () => {
    expect(() => prompt("x").sample(-1)).toThrow(RangeError)
    expect(() => prompt("x").sample(1.5)).toThrow(RangeError)
  })
})

describe("a session on the tiny model", () => {
  let session: Session
  beforeAll(async () => {
    session = await openSession({ model: "synthetic:tiny" })
  })
  afterAll(async () => {
    await session?.close()
  })

  it("returns each node's completions, and a later run reuses the cached few-shot prefix", async () => {
    const root = prompt(FEW_SHOT_PROMPT)
    const a = root.child("\nQUESTION:\nPrint 1.\n").sample(2, { maxTokens: 8 })
    const b = root.child("\nQUESTION:\nPrint 2.\n").sample(3, { maxTokens: 8 })
    const deeper = b.child("ANSWER:\n").sample(1, { maxTokens: 4 })
    const idle = root.child("\nQUESTION:\nNever sampled.\n")
    const first = await session.run(root, { sampling: { seed: 7 } })

    expect(first.nodes).toEqual([a, b, deeper])
    expect(first.completions(a).map((c) => c.sample)).toEqual([0, 1])
    expect(first.completions(b).map((c) => c.sample)).toEqual([0, 1, 2])
    expect(first.completions(deeper).every((c) => c.tokens.length <= 4)).toBe(true)
    expect(first.completions(idle)).toEqual([])
    // Two sampling settings, two engine requests; the second finds the few-shot prefix cached by the first.
    expect(first.stats.requests).toBe(2)
    expect(first.requests[1]!.reusedTokens).toBeGreaterThanOrEqual(FEW_SHOT_PROMPT.length)

    const again = prompt(FEW_SHOT_PROMPT)
    const c = again.child("\nQUESTION:\nPrint 3.\n").sample(2, { maxTokens: 8 })
    const second = await session.run(again)
    expect(second.completions(c)).toHaveLength(2)
    expect(second.stats.reusedTokens).toBeGreaterThanOrEqual(FEW_SHOT_PROMPT.length)
    // Only the new problem's tokens are prefilled.
    expect(second.stats.prefillTokens).toBeLessThan(first.requests[0]!.prefillTokens)
    expect(second.stats.prefillTokens).toBeLessThan(20)
  })
})
