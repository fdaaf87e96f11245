/**
 * The prompt tree's per-node keys, `firstSample` and `sampling`, as
 * parsePromptTree reads them (what `canopy generate --tree` and the server's
 * tree endpoint get): valid values kept as given, every bad one an
 * InvalidPromptTree naming its field by JSON path. Hand-picked edge cases
 * with their exact messages, then random trees with one bad value somewhere.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { InvalidPromptTree, parsePromptTree, type PromptTree } from "../src/engine/PromptTree.ts"
import { DEFAULT_SAMPLING, type SamplingOptions } from "../src/engine/request.ts"

/** What parsing `input` failed with: the error's path and problem. */
const failure = (input: unknown, vocabSize?: number): { path: string; problem: string } | undefined => {
  try {
    parsePromptTree(input, vocabSize)
    return undefined
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidPromptTree)
    const { path, problem } = e as InvalidPromptTree
    expect((e as InvalidPromptTree).message).toBe(`prompt tree ${path}: ${problem}`)
    return { path, problem }
  }
}

/** A tree whose second node carries `own` next to its samples. */
const withChild = (own: Record<string, unknown>): unknown => ({ text: "Once", children: [{ text: " upon", samples: 2, ...own }] })

const SETTINGS = Object.keys(DEFAULT_SAMPLING).join(", ")

describe("sampling overrides on a node", () => {
  it("are kept as given, with every setting there is", () => {
    const sampling: SamplingOptions = {
      temperature: 0, topK: 40, topP: 0.95, seed: 2 ** 32 - 1, maxTokens: 1, stop: ["\n\n"], stopTokenIds: [0, 7], ignoreEos: true
    }
    const tree = { text: "Once", sampling: { temperature: 1.5 }, children: [{ text: " upon", samples: 2, sampling }] }
    expect(parsePromptTree(tree, 8)).toEqual(tree)
    expect(parsePromptTree(withChild({ sampling: {} }))).toEqual(withChild({ sampling: {} }))
  })

  it.each([
    ["temperature", -1, "must be a number ≥ 0, got -1"],
    ["temperature", "0.5", `must be a number ≥ 0, got "0.5"`],
    ["temperature", JSON.parse("1e999") as number, "must be a number ≥ 0, got Infinity"],
    ["topK", 1.5, "must be an integer ≥ 0, got 1.5"],
    ["topK", -1, "must be an integer ≥ 0, got -1"],
    ["topP", 0, "must be in (0, 1], got 0"],
    ["topP", 1.5, "must be in (0, 1], got 1.5"],
    ["seed", -1, "must be an integer from 0 to 2³²−1, got -1"],
    ["seed", 2 ** 32, "must be an integer from 0 to 2³²−1, got 4294967296"],
    ["seed", null, "must be an integer from 0 to 2³²−1, got null"],
    ["maxTokens", 0, "must be an integer ≥ 1, got 0"],
    ["maxTokens", 2.5, "must be an integer ≥ 1, got 2.5"],
    ["stop", "END", `must be an array of strings, got "END"`],
    ["stop", ["a", 1], `must be an array of strings, got ["a",1]`],
    ["stop", [""], "stop strings must not be empty"],
    ["stopTokenIds", 3, "must be an array of token ids, got 3"],
    ["stopTokenIds", [-1], "-1 is not a token id (0..the vocabulary's last)"],
    ["ignoreEos", "yes", `must be true or false, got "yes"`],
    ["temprature", 1, `unknown setting; the settings are ${SETTINGS}`]
  ])("refuse %s = %j, naming the field", (field, value, problem) => {
    expect(failure(withChild({ sampling: { [field]: value } }))).toEqual({ path: `$.children[0].sampling.${field}`, problem })
  })

  it("check stop token ids against the vocabulary when it is known", () => {
    const tree = withChild({ sampling: { stopTokenIds: [3, 10] } })
    expect(failure(tree, 10)).toEqual({ path: "$.children[0].sampling.stopTokenIds", problem: "10 is not a token id (0..9)" })
    expect(failure(tree, 11)).toBeUndefined()
  })

  it("must be an object", () => {
    for (const [sampling, shown] of [[3, "3"], [null, "null"], [[], "[]"], ["hot", `"hot"`]] as const) {
      expect(failure(withChild({ sampling }))).toEqual({ path: "$.children[0].sampling", problem: `must be an object, got ${shown}` })
    }
    expect(failure({ text: "Once", samples: 1, sampling: 1 })).toEqual({ path: "$.sampling", problem: "must be an object, got 1" })
  })

  it("report the first bad field in document order", () => {
    const tree = {
      text: "Once",
      children: [{ text: " upon", sampling: { topK: -1 }, children: [{ text: " a", samples: 1, sampling: { seed: -1 } }] }, { text: " time", sampling: { topP: 2 } }]
    }
    expect(failure(tree)?.path).toBe("$.children[0].sampling.topK")
  })
})

describe("firstSample", () => {
  it("is kept as given, up to firstSample + samples = 2³²", () => {
    for (const own of [{ firstSample: 0 }, { firstSample: 17 }, { firstSample: 2 ** 32 - 2 }]) expect(parsePromptTree(withChild(own))).toEqual(withChild(own))
    // on a node that asks for no samples, only the bound
    const idle = { text: "Once", firstSample: 2 ** 32, children: [{ text: " upon", samples: 1 }] }
    expect(parsePromptTree(idle)).toEqual(idle)
  })

  it.each([-1, 1.5, "3", null, true, 2 ** 32 - 1, 2 ** 32])("refuses firstSample %j next to 2 samples", (firstSample) => {
    expect(failure(withChild({ firstSample }))).toEqual({
      path: "$.children[0].firstSample",
      problem: `must be an integer ≥ 0 with firstSample + samples ≤ 2³², got ${JSON.stringify(firstSample)}`
    })
  })

  it("is checked at the root too", () => {
    expect(failure({ text: "Once", samples: 1, firstSample: 2 ** 32 })?.path).toBe("$.firstSample")
  })
})

describe("on random trees", () => {
  /** Every node with its JSON path, in document order. */
  const nodesOf = (tree: PromptTree, path = "$"): Array<{ node: PromptTree; path: string }> =>
    [{ node: tree, path }, ...(tree.children ?? []).flatMap((child, i) => nodesOf(child, `${path}.children[${i}]`))]

  /** Trees of text nodes at most `depth` levels deep, each node asking for 0–2 samples. */
  const shapeOf = (depth: number): fc.Arbitrary<PromptTree> =>
    fc.tuple(fc.constantFrom("Once", " upon", " a time"), fc.nat(2), depth === 0 ? fc.constant([]) : fc.array(shapeOf(depth - 1), { maxLength: 3 }))
      .map(([text, samples, children]) => ({ text, ...(samples > 0 ? { samples } : {}), ...(children.length > 0 ? { children } : {}) }))
  const shapes = shapeOf(3).filter((tree) => nodesOf(tree).some(({ node }) => node.samples !== undefined))

  /** The tree with `own` added to its node at document-order index `at`. */
  const placed = (tree: PromptTree, at: number, own: Record<string, unknown>): { tree: PromptTree; path: string } => {
    const copy = structuredClone(tree) as PromptTree
    const target = nodesOf(copy)[at]!
    Object.assign(target.node, own)
    return { tree: copy, path: target.path }
  }

  const validSampling: fc.Arbitrary<Partial<SamplingOptions>> = fc.record({
    temperature: fc.double({ min: 0, max: 5, noNaN: true }),
    topK: fc.nat(1000),
    topP: fc.double({ min: 0, max: 1, minExcluded: true, noNaN: true }),
    seed: fc.nat(2 ** 32 - 1),
    maxTokens: fc.integer({ min: 1, max: 1 << 20 }),
    stop: fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 3 }),
    stopTokenIds: fc.array(fc.nat(2 ** 32 - 1), { maxLength: 3 }),
    ignoreEos: fc.boolean()
  }, { requiredKeys: [] })

  const badSetting: fc.Arbitrary<readonly [string, unknown]> = fc.oneof(
    fc.tuple(fc.constant("temperature"), fc.oneof(fc.double({ max: -1e-9, noNaN: true }), fc.string(), fc.constant(null))),
    fc.tuple(fc.constant("topK"), fc.oneof(fc.integer({ max: -1 }), fc.double({ min: 0.01, max: 100, noNaN: true }).filter((x) => !Number.isInteger(x)))),
    fc.tuple(fc.constant("topP"), fc.oneof(fc.double({ max: 0, noNaN: true }), fc.double({ min: 1, minExcluded: true, noNaN: true }))),
    fc.tuple(fc.constant("seed"), fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 2 ** 32, max: Number.MAX_SAFE_INTEGER }), fc.boolean())),
    fc.tuple(fc.constant("maxTokens"), fc.oneof(fc.integer({ max: 0 }), fc.string())),
    fc.tuple(fc.constant("stop"), fc.oneof(fc.string(), fc.constant([""]), fc.array(fc.integer(), { minLength: 1 }))),
    fc.tuple(fc.constant("stopTokenIds"), fc.oneof(fc.array(fc.integer({ max: -1 }), { minLength: 1 }), fc.constant("1"))),
    fc.tuple(fc.constant("ignoreEos"), fc.oneof(fc.integer(), fc.string())),
    fc.tuple(fc.string({ minLength: 1 }).filter((k) => !(k in DEFAULT_SAMPLING)), fc.anything())
  )

  it("keep valid overrides and firstSample on any node as given", () => {
    fc.assert(
      fc.property(shapes, fc.nat(), validSampling, fc.nat(1000), (tree, at, sampling, firstSample) => {
        const { tree: withKeys } = placed(tree, at % nodesOf(tree).length, { sampling, firstSample })
        expect(parsePromptTree(withKeys)).toEqual(withKeys)
      }),
      { numRuns: 200 }
    )
  })

  it("name a bad setting on any node by its JSON path", () => {
    fc.assert(
      fc.property(shapes, fc.nat(), badSetting, (tree, at, [field, value]) => {
        const { tree: bad, path } = placed(tree, at % nodesOf(tree).length, { sampling: { [field]: value } })
        expect(failure(bad)?.path).toBe(`${path}.sampling.${field}`)
      }),
      { numRuns: 300 }
    )
  })

  it("name a firstSample out of bounds on any node by its JSON path", () => {
    fc.assert(
      fc.property(shapes, fc.nat(), fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 2 ** 32 - 1, max: 2 ** 40 }), fc.double({ noNaN: true }).filter((x) => !Number.isInteger(x))), (tree, at, firstSample) => {
        const index = at % nodesOf(tree).length
        const samples = nodesOf(tree)[index]!.node.samples ?? 0
        fc.pre(firstSample < 0 || !Number.isInteger(firstSample) || firstSample + samples > 2 ** 32)
        const { tree: bad, path } = placed(tree, index, { firstSample })
        expect(failure(bad)?.path).toBe(`${path}.firstSample`)
      }),
      { numRuns: 200 }
    )
  })
})
