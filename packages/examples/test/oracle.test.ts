import { chooseDecodeTile, layoutCase, maxDecodeGroup, openGpu, type GpuHandle } from "@canopy/kernels"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scaled } from "./limits.ts"
import { parseAttentionCase } from "../src/oracle/AttentionCase.ts"
import { answerCase, parseOracleInput } from "../src/oracle/answer.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
// spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
const canopy = (input: string) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", "attention"], { cwd: root, input, encoding: "utf8", timeout: scaled(60_000) })

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

/** Random cases whose K, V and q values come from `value`. */
const caseArbitraryOf = (value: fc.Arbitrary<number>) => fc
  .record({
    kvHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.constantFrom(1, 2, 4),
    headDim: fc.constantFrom(8, 16),
    lengths: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 6 }),
    parentPicks: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 6, maxLength: 6 }),
    queryPicks: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 5 }),
    values: fc.array(value, { minLength: 64, maxLength: 64 })
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

const caseArbitrary = caseArbitraryOf(fc.double({ min: -3, max: 3, noNaN: true }))

/**
 * The nearest f16 (ties to even), from the value's binade: written apart from
 * Canopy's rounding on the bits. For f32 values (which f16 cases here are
 * drawn from) rounding to f32 first, as Canopy does, changes nothing.
 */
const toF16 = (x: number): number => {
  const a = Math.abs(x)
  if (a === 0) return x
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e--
  if (2 ** (e + 1) <= a) e++
  // 10 fraction bits in a normal binade; subnormals share the smallest normal's step, 2^-24
  const ulp = 2 ** (Math.max(e, -14) - 10)
  let n = Math.floor(a / ulp)
  const rest = a / ulp - n
  if (rest > 0.5 || (rest === 0.5 && n % 2 === 1)) n++
  return Math.sign(x) * n * ulp
}

/** A case's K and V as an f16 KV cache holds them. */
const roundedKv = (json: any) => ({
  ...json,
  nodes: json.nodes.map((n: any) => ({ ...n, k: n.k.map(toF16), v: n.v.map(toF16) }))
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

  it("answers random f16-KV cases like a direct softmax over the f16-rounded K and V, with every method", async () => {
    await fc.assert(
      fc.asyncProperty(caseArbitraryOf(fc.float({ min: -3, max: 3, noNaN: true })), fc.constantFrom("hydragen", "baseline", "reference"), async (json, method) => {
        const answer = await answerCase(parseAttentionCase({ ...json, method, kvDtype: "f16" }), gpu)
        const rounded = roundedKv(json)
        json.queries.forEach((_, qi) => {
          const want = direct(rounded, qi)
          expectClose(answer.out[qi]!, want.out)
          expectClose(answer.lse[qi]!, want.lse)
        })
      }),
      { numRuns: 20 }
    )
  })

  it("rounds K and V to f16 exactly as the contract says when kvDtype is f16, and not otherwise", async () => {
    // One token: out is its value, lse its score. Ties go to the even neighbour; 65519 rounds down to 65504, the largest f16.
    const v = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 2 ** -25, 3 * 2 ** -25, 0.1, -1 / 3, 2049]
    const asF16 = [1, 1 + 2 ** -9, 65504, 0, 2 ** -23, 0.0999755859375, -0.333251953125, 2048]
    const one = (kvDtype: string | undefined, method: string) => parseAttentionCase({
      heads: 1, kvHeads: 1, headDim: 8, method, ...(kvDtype === undefined ? {} : { kvDtype }),
      nodes: [{ parent: null, length: 1, k: [1 + 2 ** -11, 0, 0, 0, 0, 0, 0, 0], v }],
      queries: [{ node: 0, q: [1, 0, 0, 0, 0, 0, 0, 0] }]
    })
    for (const method of ["hydragen", "baseline", "reference"]) {
      const f16 = await answerCase(one("f16", method), gpu)
      expect(f16.out[0], method).toEqual(asF16)
      expect(f16.lse[0]![0]!, method).toBeCloseTo(1 / Math.sqrt(8), 6)
      for (const kvDtype of ["f32", undefined]) {
        const f32 = await answerCase(one(kvDtype, method), gpu)
        // the GPU methods hold every input in f32; the reference computes in float64
        expect(f32.out[0], method).toEqual(method === "reference" ? v : v.map(Math.fround))
        expect(f32.lse[0]![0]!, method).toBeCloseTo((1 + 2 ** -11) / Math.sqrt(8), 6)
      }
    }
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
    ["an unknown KV dtype", { kvDtype: "bf16", heads: 1, kvHeads: 1, headDim: 8, nodes: [], queries: [] }, '$.kvDtype: must be "f16" or "f32", got "bf16"'],
    ["a KV value an f16 cache would hold as infinity", { kvDtype: "f16", heads: 1, kvHeads: 1, headDim: 8, nodes: [{ parent: null, length: 1, k: new Array(8).fill(0), v: [0, 65520, 0, 0, 0, 0, 0, 0] }], queries: [] }, "$.nodes[0].v[1]: must be within the range of an f16 KV cache (it rounds to infinity from magnitude 65520; the largest f16 is 65504), got 65520"],
    ["an unsupported head dim on the GPU", { heads: 1, kvHeads: 1, headDim: 12, nodes: [], queries: [] }, "headDim"],
    ["more query heads per KV head than the decode kernel takes", { heads: 1024, kvHeads: 1, headDim: 128, nodes: [], queries: [] }, "$.heads: 1024 query heads per KV head"],
    ["a value beyond the f32 range", { heads: 1, kvHeads: 1, headDim: 8, nodes: [{ parent: null, length: 1, k: [1e39, 0, 0, 0, 0, 0, 0, 0], v: new Array(8).fill(0) }], queries: [{ node: 0, q: new Array(8).fill(0) }] }, "$.nodes[0].k[0]: must be within the f32 range"]
  ])("refuses %s with exit code 2 and a message naming it", (_, input, words) => {
    const r = canopy(typeof input === "string" ? input : JSON.stringify(input))
    expect(r.status).toBe(2)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(words)
  })

  it("refuses values and magnitudes the GPU path cannot represent, naming the field and the limit", () => {
    const problem = (text: string): string => {
      try {
        parseOracleInput(text)
      } catch (e) {
        return (e as Error).message
      }
      return "accepted"
    }
    const zeros = (n: number) => new Array<number>(n).fill(0)
    const one = (k: ReadonlyArray<number>, v: ReadonlyArray<number>, q: ReadonlyArray<number>, length = 1) =>
      JSON.stringify({ heads: 1, kvHeads: 1, headDim: 8, nodes: [{ parent: null, length, k, v }], queries: [{ node: 0, q }] })
    expect(problem(one([1e39, ...zeros(7)], zeros(8), zeros(8)))).toBe(
      "$.nodes[0].k[0]: must be within the f32 range the GPU path computes in (magnitude at most 3.4028234663852886e+38), got 1e+39"
    )
    expect(problem(one([1e20, ...zeros(7)], zeros(8), [1e20, ...zeros(7)]))).toBe(
      "$.queries[0].q: its scores against $.nodes[0].k (KV head 0) may reach √headDim·max|q|·max|k| = 2.83·1.00e+20·1.00e+20 = 2.83e+40; " +
        "the GPU path takes scores up to 1e+29"
    )
    expect(problem(one(zeros(16), [3e38, ...zeros(7), 3e38, ...zeros(7)], zeros(8), 2))).toBe(
      "$.nodes[0].v: $.queries[0] sums these values (KV head 0) over the 2 tokens of its path: tokens·max|v| = 2·3.00e+38 = 6.00e+38; " +
        "the GPU path's f32 sums take up to 1e+38"
    )
    // JSON.parse reads 1e999 as Infinity; the message must not call it null
    expect(problem(one(zeros(8), zeros(8), zeros(8)).replace('"q":[0', '"q":[1e999'))).toBe(
      "$.queries[0].q[0]: must be a finite number, got a number beyond the f64 range (JSON.parse reads it as Infinity)"
    )
    expect(problem(one(zeros(8), zeros(8), zeros(8)).replace('"heads":1', '"heads":-1e999'))).toBe(
      "$.heads: must be an integer from 1 to 1024, got a number beyond the f64 range (JSON.parse reads it as -Infinity)"
    )
    // the bound is on the largest magnitudes of the query's path only: a large key elsewhere is fine
    const twoRoots = JSON.stringify({
      heads: 1, kvHeads: 1, headDim: 8,
      nodes: [{ parent: null, length: 1, k: [1e30, ...zeros(7)], v: zeros(8) }, { parent: null, length: 1, k: zeros(8), v: zeros(8) }],
      queries: [{ node: 1, q: [1e20, ...zeros(7)] }]
    })
    expect(problem(twoRoots)).toBe("accepted")
  })

  it("answers exactly at scores near the bound, which leaves room below the kernels' stand-in for −∞ (−1e30)", async () => {
    // score −1e14·1e14·8/√8 ≈ −2.8e28: within the bound, and far below any real score
    for (const method of ["hydragen", "baseline"] as const) {
      const answer = await answerCase(parseAttentionCase({
        heads: 1, kvHeads: 1, headDim: 8, method,
        nodes: [{ parent: null, length: 1, k: new Array(8).fill(-1e14), v: [1, 2, 3, 4, 5, 6, 7, 8] }],
        queries: [{ node: 0, q: new Array(8).fill(1e14) }]
      }), gpu)
      expect(answer.out[0]).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
      expect(answer.lse[0]![0]! / (-8e28 / Math.sqrt(8))).toBeCloseTo(1, 5)
    }
  })

  it("names the decode kernel's limit on query heads per KV head, from the device's limits", async () => {
    // hand-worked: at head dim 128 and 128 threads, 8 lanes per key fit 32 KiB up to 16 heads; in 16 KiB, 5
    const limits = (bytes: number) => ({ maxComputeInvocationsPerWorkgroup: 128, maxComputeWorkgroupStorageSize: bytes }) as GPUSupportedLimits
    expect(maxDecodeGroup(128, limits(32768))).toBe(16)
    expect(maxDecodeGroup(128, limits(16384))).toBe(5)
    expect(() => chooseDecodeTile(128, 5, limits(16384))).not.toThrow()
    expect(() => chooseDecodeTile(128, 6, limits(16384))).toThrow()
    const l = gpu.device.limits
    await expect(answerCase(parseAttentionCase({ heads: 1024, kvHeads: 1, headDim: 128, nodes: [], queries: [] }), gpu)).rejects.toThrow(
      `$.heads: 1024 query heads per KV head (heads 1024 / kvHeads 1) are more than the GPU decode kernel takes at head dim 128 ` +
        `on this adapter: at most ${maxDecodeGroup(128, l)} (a workgroup of ${Math.min(128, l.maxComputeInvocationsPerWorkgroup)} threads and ` +
        `${l.maxComputeWorkgroupStorageSize} bytes of workgroup memory); method "reference" takes any`
    )
  })

  /** 130,000 queries on a two-node path: input-sized arrays that an argument spread or a recursion per query would overflow the stack with. */
  const d = 8
  const many = {
    heads: 1, kvHeads: 1, headDim: d,
    nodes: [
      { parent: null, length: 2, k: Array.from({ length: 2 * d }, (_, i) => i % 3), v: Array.from({ length: 2 * d }, (_, i) => i) },
      { parent: 0, length: 1, k: new Array(d).fill(1), v: new Array(d).fill(2) }
    ],
    queries: Array.from({ length: 130_000 }, (_, s) => ({ node: s % 2, q: Array.from({ length: d }, (_, i) => ((s + i) % 5) / 5) }))
  }

  it("parses, lays out and answers 130,000 queries (no argument spreads over input-sized arrays)", async () => {
    const { plan, inputs } = layoutCase(parseAttentionCase(many), 16)
    expect(plan.numSequences).toBe(130_000)
    expect(plan.levels.map((l) => [...l.nodeIds])).toEqual([[0], [1]])
    expect(plan.numPartials).toBe(130_000 + 65_000)
    expect(inputs.q).toHaveLength(130_000 * d)
    const reference = await answerCase(parseAttentionCase({ ...many, method: "reference" }), gpu)
    expect(reference.out).toHaveLength(130_000)
    // the rows repeat every 10 queries (node s % 2, q from s % 5): one period against the direct softmax, and the last rows
    for (let s = 0; s < 10; s++) expectClose(reference.out[s]!, direct(many, s).out)
    for (let s = 129_990; s < 130_000; s++) expect(reference.out[s]).toEqual(reference.out[s % 10])
  })

  // SwiftShader takes about half a minute over these (the baseline several minutes); a GPU takes moments
  it("answers 130,000 queries on the GPU path as the reference does", async (context) => {
    if (gpu.adapter.software) return context.skip("a software adapter")
    const reference = await answerCase(parseAttentionCase({ ...many, method: "reference" }), gpu)
    const hydragen = await answerCase(parseAttentionCase({ ...many, method: "hydragen" }), gpu)
    expect(hydragen.out).toHaveLength(130_000)
    let worst = 0
    for (let s = 0; s < 130_000; s++) {
      for (let i = 0; i < d; i++) worst = Math.max(worst, Math.abs(hydragen.out[s]![i]! - reference.out[s]![i]!) / Math.max(1e-6, Math.abs(reference.out[s]![i]!)))
    }
    expect(worst).toBeLessThan(1e-4)
  })

  it("rejects NaN-like values that JSON cannot hold but a parser could be handed", () => {
    expect(() => parseOracleInput(JSON.stringify({ heads: 1, kvHeads: 1, headDim: 1, nodes: [{ parent: null, length: 1, k: ["1"], v: [1] }], queries: [] }))).toThrow(/finite number/)
  })
})
