import { describe, expect, it } from "vitest"
import { benchPlan } from "../src/benchPlan.ts"
import { BlockPool } from "../src/BlockPool.ts"
import { LevelPlanner } from "../src/LevelPlanner.ts"
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

describe("LevelPlanner", () => {
  /** a few-shot prefix, two problems under it, three samples on leaves of their own under each */
  const samplingTree = () => {
    const tree = new Tree(new BlockPool({ numBlocks: 64, blockSize: 4 }))
    const prefix = [1, 2, 3, 4, 5, 6]
    const problems = [[7, 8, 9], [10, 11]].map((p) => tree.insert([...prefix, ...p]).seq)
    const samples = [0, 1, 2, 3, 4, 5].map((i) => {
      const seq = tree.fork(problems[i % 2]!)
      tree.append(seq, [20 + i])
      return seq
    })
    for (const p of problems) tree.release(p)
    return { tree, samples }
  }

  it("refreshes the plan while decoding grows the leaves, across block boundaries", () => {
    const { tree, samples } = samplingTree()
    const planner = new LevelPlanner()
    let before = planner.plan(tree, samples)
    expect(before).toEqual(planLevels(tree, samples))
    for (let step = 0; step < 9; step++) {
      samples.forEach((seq, i) => tree.append(seq, [30 + i]))
      const plan = planner.plan(tree, samples)
      expect(plan).toEqual(planLevels(tree, samples))
      // the leaves grew: the refreshed plan reads their lengths (and new blocks), the plan before keeps its own
      expect(Array.from(plan.levels[2]!.length)).toEqual(Array.from(before.levels[2]!.length, (l) => l + 1))
      expect(Array.from(plan.seqLength)).toEqual(Array.from(before.seqLength, (l) => l + 1))
      before = plan
    }
    expect({ built: planner.built, refreshed: planner.refreshed }).toEqual({ built: 1, refreshed: 9 })
  })

  it("plans anew when the sequences or their paths change", () => {
    const { tree, samples } = samplingTree()
    const planner = new LevelPlanner()
    planner.plan(tree, samples)
    // another order, another set
    expect(planner.plan(tree, samples.slice().reverse())).toEqual(planLevels(tree, samples.slice().reverse()))
    const fewer = samples.slice(1)
    expect(planner.plan(tree, fewer)).toEqual(planLevels(tree, fewer))
    expect(planner.built).toBe(3)
    // a pending token on a private leaf grows it in place: the paths stay, the plan is refreshed
    planner.plan(tree, samples)
    tree.appendPending(samples[2]!)
    expect(planner.plan(tree, samples)).toEqual(planLevels(tree, samples))
    expect({ built: planner.built, refreshed: planner.refreshed }).toEqual({ built: 4, refreshed: 1 })
    // a fork shares a leaf: the next token of either starts a node of its own, and its end moves there
    tree.resolvePending(samples[2]!, 40)
    const all = [...samples, tree.fork(samples[0]!)]
    planner.plan(tree, all)
    tree.append(all.at(-1)!, [41])
    expect(planner.plan(tree, all)).toEqual(planLevels(tree, all))
    expect(planner.built).toBe(6)
    // a node whose parent changed without any sequence's end changing (a split the tree's operations always pair with a moved end)
    const leaf = tree.sequence(samples[1]!).end
    leaf.parent = leaf.parent!.parent
    expect(planner.plan(tree, all)).toEqual(planLevels(tree, all))
    // and one whose start slot changed
    leaf.startSlot = (leaf.startSlot + 1) % 4
    expect(planner.plan(tree, all)).toEqual(planLevels(tree, all))
    expect(planner.built).toBe(8)
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
    // and the planner's refresh beside it, in the same rounds
    expect(r.refresh.roundMedianUs).toHaveLength(3)
    expect([...r.refresh.roundMedianUs].sort((a, b) => a - b)[1]).toBe(r.refresh.medianUs)
    expect(r.refresh.p10Us).toBeLessThanOrEqual(r.refresh.p90Us)
  })
})
