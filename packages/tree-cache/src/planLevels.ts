import type { LevelPlan, LevelPlanLevel } from "./LevelPlan.ts"
import type { PrefixTree, SeqId, TreeNode } from "./PrefixTree.ts"

/**
 * Marks which (plan, level) last visited a node. Global rather than per tree
 * so that a mark can never be mistaken for one from another plan.
 */
let generation = 0

/**
 * The level plan (see LevelPlan.ts) for the given live sequences; index s of
 * `sequences` is query row s. Level d lists every node at depth d on the path
 * of at least one sequence, in order of first appearance; each node's query
 * entries are in sequence order. Sequences may end at different depths; a
 * sequence with no tokens gets no partial states. Zero-length nodes, should
 * any exist, are planned like the others (length 0, empty block table).
 */
export function planLevels(tree: PrefixTree, sequences: ArrayLike<SeqId>): LevelPlan {
  return buildLevelPlan(tree, sequences).plan
}

/** A plan with the nodes it was built from: each level's nodes in plan order, each sequence's end. */
export interface BuiltLevelPlan {
  readonly plan: LevelPlan
  readonly levelNodes: ReadonlyArray<ReadonlyArray<TreeNode>>
  readonly ends: ReadonlyArray<TreeNode>
}

/** planLevels, keeping the nodes (LevelPlanner refreshes a plan from them). */
export function buildLevelPlan(tree: PrefixTree, sequences: ArrayLike<SeqId>): BuiltLevelPlan {
  const numSequences = sequences.length
  const ends = new Array<TreeNode>(numSequences)
  const pathIndptr = new Uint32Array(numSequences + 1)
  const seqLength = new Uint32Array(numSequences)
  const root = tree.root

  let maxDepth = 0
  for (let s = 0; s < numSequences; s++) {
    const view = tree.sequence(sequences[s]!)
    ends[s] = view.end
    seqLength[s] = view.length
    let depth = 0
    for (let n = view.end; n !== root; n = n.parent!) depth++
    pathIndptr[s + 1] = pathIndptr[s]! + depth
    if (depth > maxDepth) maxDepth = depth
  }

  const total = pathIndptr[numSequences]!
  const path = new Array<TreeNode>(total)
  const pathNodes = new Int32Array(total)
  for (let s = 0; s < numSequences; s++) {
    let k = pathIndptr[s + 1]!
    for (let n = ends[s]!; n !== root; n = n.parent!) {
      path[--k] = n
      pathNodes[k] = n.id
    }
  }

  const seqPartials = new Uint32Array(total)
  // Per level: its nodes by plan index, and each node's entry count, later its next free entry.
  const levelNodes = new Array<TreeNode>(numSequences)
  const nodeCursor = new Uint32Array(numSequences)
  const levels: LevelPlanLevel[] = []
  const nodesOfLevels: Array<Array<TreeNode>> = []
  let queryOffset = 0
  for (let d = 0; d < maxDepth; d++) {
    const mark = ++generation
    let count = 0
    let entries = 0
    let blockCount = 0
    // Pass 1: the level's distinct nodes and how many sequences attend each.
    for (let s = 0; s < numSequences; s++) {
      const at = pathIndptr[s]! + d
      if (at >= pathIndptr[s + 1]!) continue
      const n = path[at]!
      if (n.planMark !== mark) {
        n.planMark = mark
        n.planIndex = count
        levelNodes[count] = n
        nodeCursor[count] = 0
        blockCount += n.blocks.length
        count++
      }
      nodeCursor[n.planIndex]!++
      entries++
    }

    const nodeIds = new Int32Array(count)
    const length = new Uint32Array(count)
    const startSlot = new Uint32Array(count)
    const blockIndptr = new Uint32Array(count + 1)
    const blockIndices = new Uint32Array(blockCount)
    const queryIndptr = new Uint32Array(count + 1)
    const queryIndices = new Uint32Array(entries)
    let b = 0
    for (let i = 0; i < count; i++) {
      const n = levelNodes[i]!
      nodeIds[i] = n.id
      length[i] = n.tokens.length
      startSlot[i] = n.startSlot
      const blocks = n.blocks
      for (let j = 0; j < blocks.length; j++) blockIndices[b++] = blocks[j]!
      blockIndptr[i + 1] = b
      // nodeCursor turns from a count into the node's next free query entry.
      const c = nodeCursor[i]!
      nodeCursor[i] = queryIndptr[i]!
      queryIndptr[i + 1] = queryIndptr[i]! + c
    }

    // Pass 2: query entries in sequence order, and each sequence's partial slot.
    for (let s = 0; s < numSequences; s++) {
      const at = pathIndptr[s]! + d
      if (at >= pathIndptr[s + 1]!) continue
      const k = nodeCursor[path[at]!.planIndex]!++
      queryIndices[k] = s
      seqPartials[at] = queryOffset + k
    }

    levels.push({ depth: d, nodeIds, length, startSlot, blockIndptr, blockIndices, queryIndptr, queryIndices, queryOffset })
    nodesOfLevels.push(levelNodes.slice(0, count))
    queryOffset += entries
  }

  const plan: LevelPlan = {
    blockSize: tree.blockSize,
    numSequences,
    levels,
    numPartials: queryOffset,
    // A sequence has one partial per node on its path, so both CSRs share offsets.
    seqPartialIndptr: pathIndptr.slice(),
    seqPartials,
    pathIndptr,
    pathNodes,
    seqLength
  }
  return { plan, levelNodes: nodesOfLevels, ends }
}
