import { openGpu, type GpuHandle } from "@canopy/kernels"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseAttentionCase } from "../src/oracle/AttentionCase.ts"
import { answerCase, parseOracleInput } from "../src/oracle/answer.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const canopy = (input: string) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", "attention"], { cwd: root, input, encoding: "utf8" })

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

/** Direct softmax over the whole path, in float64, written independently of the kernels' reference. */
const direct = (json: any, qi: number) => {
  const { heads, kvHeads, headDim: d } = json
  const path: Array<number> = []
  for (let n = json.queries[qi].node; n !== null; n = json.nodes[n].parent) path.unshift(n)
  const out: Array<number> = []
  const lse: Array<number | null> = []
  for (let h = 0; h < heads; h++) {
    const kvh = Math.floor(h / (heads / kvHeads))
    const scores: Array<number> = []
    const values: Array<Array<number>> = []
    for (const n of path) {
      const node = json.nodes[n]
      for (let t = 0; t < node.length; t++) {
        let s = 0
        for (let i = 0; i < d; i++) s += json.queries[qi].q[h * d + i] * node.k[(t * kvHeads + kvh) * d + i]
        scores.push(s / Math.sqrt(d))
        values.push(node.v.slice((t * kvHeads + kvh) * d, (t * kvHeads + kvh + 1) * d))
      }
    }
    if (scores.length === 0) {
      out.push(...new Array(d).fill(0))
      lse.push(null)
      continue
    }
    const m = Math.max(...scores)
    const z = scores.reduce((a, s) => a + Math.exp(s - m), 0)
    lse.push(m + Math.log(z))
    for (let i = 0; i < d; i++) out.push(scores.reduce((a, s, t) => a + (Math.exp(s - m) / z) * values[t]![i]!, 0))
  }
  return { out, lse }
}

const caseArbitrary = fc
  .record({
    kvHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.constantFrom(1, 2, 4),
    headDim: fc.constantFrom(8, 16),
    lengths: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 6 }),
    parentPicks: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 6, maxLength: 6 }),
    queryPicks: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 5 }),
    values: fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: 64, maxLength: 64 })
  })
  .map(({ kvHeads, group, headDim, lengths, parentPicks, queryPicks, values }) => {
    let k = 0
    const next = () => values[k++ % values.length]!
    const heads = kvHeads * group
    const nodes = lengths.map((length, n) => ({
      parent: n === 0 || parentPicks[n]! < 0.2 ? null : Math.min(n - 1, Math.floor(parentPicks[n]! * n)),
      length,
      k: Array.from({ length: length * kvHeads * headDim }, next),
      v: Array.from({ length: length * kvHeads * headDim }, next)
    }))
    const queries = queryPicks.map((p) => ({ node: Math.min(nodes.length - 1, Math.floor(p * nodes.length)), q: Array.from({ length: heads * headDim }, next) }))
    return { heads, kvHeads, headDim, nodes, queries }
  })

const expectClose = (got: ReadonlyArray<number | null>, want: ReadonlyArray<number | null>) => {
  expect(got.length).toBe(want.length)
  const scale = Math.max(1e-6, ...want.map((x) => Math.abs(x ?? 0)))
  got.forEach((g, i) => {
    const w = want[i] as number | null
    if (w === null) expect(g).toBeNull()
    else expect(Math.abs((g as number) - w) / scale).toBeLessThan(1e-4)
  })
}

describe("the attention oracle", () => {
  it("answers random cases like a direct softmax, with every method", async () => {
    await fc.assert(
      fc.asyncProperty(caseArbitrary, fc.constantFrom("hydragen", "baseline", "reference"), async (json, method) => {
        const answer = await answerCase(parseAttentionCase({ ...json, method }), gpu)
        json.queries.forEach((_, qi) => {
          const want = direct(json, qi)
          expectClose(answer.out[qi]!, want.out)
          expectClose(answer.lse[qi]!, want.lse)
        })
      }),
      { numRuns: 30 }
    )
  })

  it("is a command: JSON in, JSON out, with exact answers on a hand-made case", () => {
    // One token: out = v exactly; lse = its score. An empty path: out 0, lse null.
    const input = {
      heads: 2, kvHeads: 1, headDim: 8,
      nodes: [
        { parent: null, length: 1, k: [2, 0, 0, 0, 0, 0, 0, 0], v: [1, 2, 3, 4, 5, 6, 7, 8] },
        { parent: null, length: 0, k: [], v: [] }
      ],
      queries: [
        { node: 0, q: [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0] },
        { node: 1, q: new Array(16).fill(1) }
      ]
    }
    const r = canopy(JSON.stringify(input))
    expect(r.status).toBe(0)
    const answer = JSON.parse(r.stdout)
    expect(answer.out[0]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8])
    expect(answer.lse[0][0]).toBeCloseTo(2 / Math.sqrt(8), 6)
    expect(answer.lse[0][1]).toBeCloseTo(0, 6)
    expect(answer.out[1]).toEqual(new Array(16).fill(0))
    expect(answer.lse[1]).toEqual([null, null])
    expect(typeof answer.adapter).toBe("string")
  })

  it.each([
    ["not JSON", "{", "not JSON"],
    ["heads not a multiple of kvHeads", { heads: 3, kvHeads: 2, headDim: 8, nodes: [], queries: [] }, "multiple of kvHeads"],
    ["a parent that is not smaller", { heads: 1, kvHeads: 1, headDim: 8, nodes: [{ parent: 0, length: 0, k: [], v: [] }], queries: [] }, "parent"],
    ["a short k array", { heads: 1, kvHeads: 1, headDim: 8, nodes: [{ parent: null, length: 1, k: [1], v: [] }], queries: [] }, "nodes[0].k"],
    ["a non-finite number", { heads: 1, kvHeads: 1, headDim: 8, nodes: [], queries: [{ node: 0, q: [] }] }, "queries[0].node"],
    ["an unknown method", { method: "fast", heads: 1, kvHeads: 1, headDim: 8, nodes: [], queries: [] }, "method"],
    ["an unsupported head dim on the GPU", { heads: 1, kvHeads: 1, headDim: 12, nodes: [], queries: [] }, "headDim"]
  ])("refuses %s with exit code 2 and a message naming it", (_, input, words) => {
    const r = canopy(typeof input === "string" ? input : JSON.stringify(input))
    expect(r.status).toBe(2)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(words)
  })

  it("rejects NaN-like values that JSON cannot hold but a parser could be handed", () => {
    expect(() => parseOracleInput(JSON.stringify({ heads: 1, kvHeads: 1, headDim: 1, nodes: [{ parent: null, length: 1, k: ["1"], v: [1] }], queries: [] }))).toThrow(/finite number/)
  })
})
