/**
 * planLevels for a caller that plans the same sequences step after step (the
 * engine's decode steps): the plan once per tree shape, refreshed per step.
 *
 * A plan's structure — each level's nodes, the query rows of each node, the
 * partial slots, the paths — follows from the sequences' paths alone. Where
 * the sequences are the ones planned last, in the same order, each still ends
 * on the node it ended on, and every planned node still has its parent (and
 * its start slot), the paths are the same nodes, so that structure is kept;
 * only what a step's tokens change is read again from the nodes: their
 * lengths, their block tables (a leaf growing into a new block) and the
 * sequences' lengths. Anything else (a new node, a split, a sequence moved
 * onto a sibling, an eviction) fails the check and plans anew.
 *
 * A refreshed plan is a new object: its new arrays are its own and the kept
 * ones are shared with the plan before, which nobody writes (LevelPlan's
 * arrays are read-only by contract), so an earlier plan stays valid.
 */
import type { LevelPlan, LevelPlanLevel } from "./LevelPlan.ts"
import { buildLevelPlan, type BuiltLevelPlan } from "./planLevels.ts"
import type { PrefixTree, SeqId, TreeNode } from "./PrefixTree.ts"

interface Kept extends BuiltLevelPlan {
  readonly tree: PrefixTree
  readonly sequences: ReadonlyArray<SeqId>
  /** every level's nodes, levels concatenated, with the parent and start slot each had when planned */
  readonly nodes: ReadonlyArray<TreeNode>
  readonly parents: ReadonlyArray<TreeNode | undefined>
  readonly startSlots: Uint32Array
}

export class LevelPlanner {
  private kept: Kept | undefined
  /** plans built from nothing */
  built = 0
  /** plans refreshed from the one before */
  refreshed = 0

  /** The plan planLevels(tree, sequences) would return. */
  plan(tree: PrefixTree, sequences: ArrayLike<SeqId>): LevelPlan {
    const kept = this.kept
    const seqLength = kept === undefined ? undefined : samePaths(kept, tree, sequences)
    if (kept !== undefined && seqLength !== undefined) {
      this.refreshed++
      return refresh(kept, seqLength)
    }
    this.built++
    const built = buildLevelPlan(tree, sequences)
    const nodes = built.levelNodes.flat()
    this.kept = {
      ...built,
      tree,
      sequences: Array.from(sequences),
      nodes,
      parents: nodes.map((n) => n.parent),
      startSlots: Uint32Array.from(nodes, (n) => n.startSlot)
    }
    return built.plan
  }
}

/** Each sequence's length, where `sequences` have the paths of the kept plan; otherwise undefined. */
const samePaths = (kept: Kept, tree: PrefixTree, sequences: ArrayLike<SeqId>): Uint32Array | undefined => {
  if (tree !== kept.tree || sequences.length !== kept.sequences.length) return undefined
  const seqLength = new Uint32Array(sequences.length)
  for (let s = 0; s < sequences.length; s++) {
    if (sequences[s] !== kept.sequences[s]) return undefined
    // a sequence no longer live throws, as planLevels does
    const view = tree.sequence(sequences[s]!)
    if (view.end !== kept.ends[s]) return undefined
    seqLength[s] = view.length
  }
  const { nodes, parents, startSlots } = kept
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!
    if (n.evicted || n.parent !== parents[i] || n.startSlot !== startSlots[i]) return undefined
  }
  return seqLength
}

/** The kept plan with its nodes' lengths and block tables read again. */
const refresh = (kept: Kept, seqLength: Uint32Array): LevelPlan => {
  const levels = kept.plan.levels.map((level, d): LevelPlanLevel => {
    const nodes = kept.levelNodes[d]!
    const length = new Uint32Array(nodes.length)
    const blockIndptr = new Uint32Array(nodes.length + 1)
    for (let i = 0; i < nodes.length; i++) {
      length[i] = nodes[i]!.length
      blockIndptr[i + 1] = blockIndptr[i]! + nodes[i]!.blocks.length
    }
    const blockIndices = new Uint32Array(blockIndptr[nodes.length]!)
    let b = 0
    for (let i = 0; i < nodes.length; i++) {
      const blocks = nodes[i]!.blocks
      for (let j = 0; j < blocks.length; j++) blockIndices[b++] = blocks[j]!
    }
    // the literal planLevels writes, key for key: one object shape for the kernels' schedulers to read
    const { depth, nodeIds, startSlot, queryIndptr, queryIndices, queryOffset } = level
    return { depth, nodeIds, length, startSlot, blockIndptr, blockIndices, queryIndptr, queryIndices, queryOffset }
  })
  const { blockSize, numSequences, numPartials, seqPartialIndptr, seqPartials, pathIndptr, pathNodes } = kept.plan
  return { blockSize, numSequences, levels, numPartials, seqPartialIndptr, seqPartials, pathIndptr, pathNodes, seqLength }
}
