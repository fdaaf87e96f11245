import { describe, expect, it } from "vitest"
import { benchPlan } from "../src/benchPlan.ts"
import { BlockPool } from "../src/BlockPool.ts"
import { planLevels } from "../src/planLevels.ts"
import { type PrefixTree, PrefixTree as Tree, TreeNode } from "../src/PrefixTree.ts"
import { checkPlan, planExpectations } from "./check.ts"

const arrays = (level: object) =>
  Object.fromEntries(Object.entries(level).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as Uint32Array) : v]))

describe("planLevels", () => {
  it("groups a two-level tree by depth, nodes in order of first appearance", () => {
    const tree = new Tree(new BlockPool({ numBlocks: 8, blockSize: 4 }))
    const prompt = tree.insert([1, 2, 3, 4, 5, 6]).seq // node 0, blocks 0 1
    const a = tree.insert([1, 2, 3, 4, 5, 6, 7, 8]).seq // node 1 [7 8] from slot 2 of block 2
    const b = tree.insert([1, 2, 3, 4, 5, 6, 9]).seq // node 2 [9] from slot 2 of block 3
    tree.release(prompt)
    const plan = planLevels(tree, [b, a])
    expect(plan.levels.map(arrays)).toEqual([
      {
        depth: 0, nodeIds: [0], length: [6], startSlot: [0], blockIndptr: [0, 2], blockIndices: [0, 1],
        queryIndptr: [0, 2], queryIndices: [0, 1], queryOffset: 0
      },
      {
        depth: 1, nodeIds: [2, 1], length: [1, 2], startSlot: [2, 2], blockIndptr: [0, 1, 2], blockIndices: [3, 2],
        queryIndptr: [0, 1, 2], queryIndices: [0, 1], queryOffset: 2
      }
    ])
    expect(plan.numPartials).toBe(4)
    expect(Array.from(plan.seqPartialIndptr)).toEqual([0, 2, 4])
    expect(Array.from(plan.seqPartials)).toEqual([0, 2, 1, 3])
    expect(Array.from(plan.pathIndptr)).toEqual([0, 2, 4])
    expect(Array.from(plan.pathNodes)).toEqual([0, 2, 0, 1])
    expect(Array.from(plan.seqLength)).toEqual([7, 8])
    expect([plan.blockSize, plan.numSequences]).toEqual([4, 2])
  })

  it("plans sequences that end at different depths, and empty ones", () => {
    const tree = new Tree(new BlockPool({ numBlocks: 8, blockSize: 4 }))
    const short = tree.insert([1, 2, 3, 4, 5, 6]).seq
    const long = tree.insert([1, 2, 3, 4, 5, 6, 7, 8]).seq
    const empty = tree.insert([]).seq
    const order = [short, empty, long]
    const plan = planLevels(tree, order)
    expect(plan.levels.map((l) => Array.from(l.queryIndices))).toEqual([[0, 2], [2]])
    expect(Array.from(plan.seqPartialIndptr)).toEqual([0, 1, 1, 3])
    expect(Array.from(plan.seqPartials)).toEqual([0, 1, 2])
    expect(Array.from(plan.seqLength)).toEqual([6, 0, 8])
    checkPlan(plan, 4, planExpectations(tree, order))
    expect(planLevels(tree, [empty]).levels).toEqual([])
  })

  it("stays valid around a zero-length node", () => {
    // The tree never makes one; build the nodes by hand and plan through a stand-in.
    const root = new TreeNode(-1, undefined, [], [], 0)
    const first = new TreeNode(0, root, [1, 2, 3], [5], 0)
    const empty = new TreeNode(1, first, [], [], 3)
    const last = new TreeNode(2, empty, [4, 5], [6, 7], 3)
    const ends = [{ end: last, length: 5 }, { end: empty, length: 3 }]
    const stand = { root, blockSize: 4, sequence: (s: number) => ends[s] } as unknown as PrefixTree
    const plan = planLevels(stand, [0, 1])
    expect(plan.levels.map(arrays)[1]).toMatchObject({ nodeIds: [1], length: [0], blockIndptr: [0, 0], queryIndices: [0, 1] })
    checkPlan(plan, 4, [
      { path: [first, empty, last], blocks: Uint32Array.of(5, 5, 5, 6, 7), slots: Uint32Array.of(0, 1, 2, 3, 0) },
      { path: [first, empty], blocks: Uint32Array.of(5, 5, 5), slots: Uint32Array.of(0, 1, 2) }
    ])
  })
})

describe("benchPlan", () => {
  it("times plans of the three-level sampling tree", () => {
    const r = benchPlan({ prefixTokens: 50, problems: 2, problemTokens: 20, samplesPerProblem: 4, sampleTokens: 5, iterations: 5, warmup: 1 })
    expect(r).toMatchObject({ sequences: 8, levels: 3, nodes: 11, partials: 24, iterations: 5 })
    expect(r.minUs).toBeGreaterThan(0)
    expect(r.medianUs).toBeGreaterThanOrEqual(r.minUs)
    expect(r.p90Us).toBeGreaterThanOrEqual(r.medianUs)
    // three rounds by default; the figure is the middle one of their medians
    expect(r.rounds).toBe(3)
    expect(r.roundMedianUs).toHaveLength(3)
    expect([...r.roundMedianUs].sort((a, b) => a - b)[1]).toBe(r.medianUs)
    expect(r.p10Us).toBeLessThanOrEqual(r.p90Us)
  })
})
