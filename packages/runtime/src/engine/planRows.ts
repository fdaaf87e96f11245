/**
 * A LevelPlan for arbitrary query rows: row r is the token of sequence
 * `seqs[r]` at `positions[r]`, and attends every token of its path up to and
 * including that position. This is the plan of a prefill (rows = a run of a
 * node's new tokens: ancestors fully, the node itself causally through
 * queryKvLimit) and equally of a decode step (rows = each sequence's last
 * token: every node fully). Rows that share a node become query rows of the
 * same level entry, so a shared prefix is read once for all of them.
 */
import type { LevelPlan, LevelPlanLevel, PrefixTree, SeqId, TreeNode } from "@canopy/tree-cache"

interface LevelBuild {
  readonly nodes: Array<TreeNode>
  readonly index: Map<TreeNode, number>
  /** per node: [row, visible tokens] pairs */
  readonly entries: Array<Array<number>>
}

export const planRows = (tree: PrefixTree, seqs: ArrayLike<SeqId>, positions: ArrayLike<number>): LevelPlan => {
  const rows = seqs.length
  const levels: Array<LevelBuild> = []
  // per row: the (level, node index, entry index) of each node it attends, root → leaf
  const rowEntries: Array<Array<[number, number, number]>> = []
  for (let r = 0; r < rows; r++) {
    const path = tree.path(seqs[r]!)
    const position = positions[r]!
    const mine: Array<[number, number, number]> = []
    let start = 0
    for (let d = 0; d < path.length; d++) {
      const node = path[d]!
      const visible = Math.min(node.length, position - start + 1)
      start += node.length
      if (visible <= 0) break
      const level = (levels[d] ??= { nodes: [], index: new Map(), entries: [] })
      let n = level.index.get(node)
      if (n === undefined) {
        n = level.nodes.length
        level.index.set(node, n)
        level.nodes.push(node)
        level.entries.push([])
      }
      const list = level.entries[n]!
      mine.push([d, n, list.length >> 1])
      list.push(r, visible)
    }
    rowEntries.push(mine)
  }

  let queryOffset = 0
  const levelOffsets: Array<Array<number>> = [] // per level, per node: first entry's global slot
  const planned: Array<LevelPlanLevel> = levels.map((level, depth) => {
    const count = level.nodes.length
    const length = new Uint32Array(count)
    const startSlot = new Uint32Array(count)
    const blockIndptr = new Uint32Array(count + 1)
    const queryIndptr = new Uint32Array(count + 1)
    for (let n = 0; n < count; n++) {
      const node = level.nodes[n]!
      length[n] = node.length
      startSlot[n] = node.startSlot
      blockIndptr[n + 1] = blockIndptr[n]! + node.blocks.length
      queryIndptr[n + 1] = queryIndptr[n]! + (level.entries[n]!.length >> 1)
    }
    const blockIndices = new Uint32Array(blockIndptr[count]!)
    const queryIndices = new Uint32Array(queryIndptr[count]!)
    const queryKvLimit = new Uint32Array(queryIndptr[count]!)
    const offsets: Array<number> = []
    for (let n = 0; n < count; n++) {
      blockIndices.set(level.nodes[n]!.blocks, blockIndptr[n]!)
      const list = level.entries[n]!
      const at = queryIndptr[n]!
      offsets.push(queryOffset + at)
      for (let e = 0; e < list.length >> 1; e++) {
        queryIndices[at + e] = list[2 * e]!
        queryKvLimit[at + e] = list[2 * e + 1]!
      }
    }
    levelOffsets.push(offsets)
    const out: LevelPlanLevel = {
      depth,
      nodeIds: Int32Array.from(level.nodes, (n) => n.id),
      length,
      startSlot,
      blockIndptr,
      blockIndices,
      queryIndptr,
      queryIndices,
      queryKvLimit,
      queryOffset
    }
    queryOffset += queryIndices.length
    return out
  })

  const seqPartialIndptr = new Uint32Array(rows + 1)
  for (let r = 0; r < rows; r++) seqPartialIndptr[r + 1] = seqPartialIndptr[r]! + rowEntries[r]!.length
  const seqPartials = new Uint32Array(seqPartialIndptr[rows]!)
  const pathNodes = new Int32Array(seqPartialIndptr[rows]!)
  const seqLength = new Uint32Array(rows)
  for (let r = 0; r < rows; r++) {
    let at = seqPartialIndptr[r]!
    for (const [d, n, e] of rowEntries[r]!) {
      seqPartials[at] = levelOffsets[d]![n]! + e
      pathNodes[at] = levels[d]!.nodes[n]!.id
      at++
    }
    seqLength[r] = positions[r]! + 1
  }
  return {
    blockSize: tree.blockSize,
    numSequences: rows,
    levels: planned,
    numPartials: queryOffset,
    seqPartialIndptr,
    seqPartials,
    pathIndptr: seqPartialIndptr,
    pathNodes,
    seqLength
  }
}
