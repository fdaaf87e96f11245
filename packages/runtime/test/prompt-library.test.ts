/**
 * The prompt-tree library: the request planned from a tree, completions
 * grouped by node, and a session whose second run finds the shared prefix cached.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { prompt } from "../src/prompt/PromptNode.ts"
import { planRequest } from "../src/prompt/requests.ts"
import { openSession, type Session } from "../src/prompt/session.ts"

// A few-shot prefix of the usual shape: an instruction and a worked problem.
const FEW_SHOT_PROMPT = [
  "Solve each programming problem with a Python 3 program that reads from standard input and writes to standard output.\n",
  "QUESTION:\nThe first line holds n. The second line holds n integers. Print the sum of the even ones.\n",
  "ANSWER:\n```python\nn = int(input())\nvalues = list(map(int, input().split()))\nprint(sum(v for v in values if v % 2 == 0))\n```\n"
].join("\n")

describe("planning the request", () => {
  it("puts every node in one request, each node's own settings on its samples, pruned to the branches with samples", () => {
    const root = prompt("shared")
    const a = root.child("a").sample(2)
    root.child("idle")
    const b = root.child("b").sample(1, { maxTokens: 4 })
    const c = b.child("c").sample(3)
    const d = root.child({ tokens: [5, 6] }).sample(1, { seed: 9 })
    const request = planRequest(root, { temperature: 0.5 })
    expect(request.sampling).toEqual({ temperature: 0.5 })
    // b's settings are its own: on a child without tokens that holds its samples, so that c does not inherit them
    expect(request.tree).toEqual({
      text: "shared",
      children: [
        { text: "a", samples: 2 },
        { text: "b", children: [{ tokens: [], samples: 1, sampling: { maxTokens: 4 } }, { text: "c", samples: 3 }] },
        { tokens: [5, 6], samples: 1, sampling: { seed: 9 } }
      ]
    })
    expect([...request.nodes]).toEqual([["0", a], ["1/0", b], ["1/1", c], ["2", d]])
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
    expect(first.completions(b).every((c) => c.tokens.length <= 8)).toBe(true)
    // Two sampling settings, one engine request: every prompt token is prefilled once, the few-shot prefix for all three nodes.
    expect(first.stats.samples).toBe(6)
    const prompts = ["\nQUESTION:\nPrint 1.\n", "\nQUESTION:\nPrint 2.\n", "\nQUESTION:\nPrint 2.\nANSWER:\n"].map((q) => FEW_SHOT_PROMPT + q)
    const distinct = new Set(prompts.flatMap((p) => Array.from(p, (_, i) => p.slice(0, i + 1))))
    expect(first.stats.prefillTokens).toBe(1 + distinct.size) // the BOS, then one byte token per character

    const again = prompt(FEW_SHOT_PROMPT)
    const c = again.child("\nQUESTION:\nPrint 3.\n").sample(2, { maxTokens: 8 })
    const second = await session.run(again)
    expect(second.completions(c)).toHaveLength(2)
    expect(second.stats.reusedTokens).toBeGreaterThanOrEqual(FEW_SHOT_PROMPT.length)
    // Only the new problem's tokens are prefilled.
    expect(second.stats.prefillTokens).toBeLessThan(first.stats.prefillTokens)
    expect(second.stats.prefillTokens).toBeLessThan(20)
  })
})
