/**
 * Lays an attention case given as a tree of nodes with their own K/V (the
 * oracle's form) into paged pools and a LevelPlan, as the engine's trie would:
 * each node's tokens in blocks of its own, token t of a node at slot
 * (tokens on its ancestors + t) mod blockSize.
 */
import type { LevelPlan, LevelPlanLevel } from "@canopy/tree-cache"
import type { PooledInputs, TreeAttentionCase } from "./reference.ts"

export const layoutCase = (c: TreeAttentionCase, blockSize: number): { plan: LevelPlan; inputs: PooledInputs } => {
  // Cases come from the oracle's input, so every collection here can be input-sized: plain loops
  // throughout, no argument spreads (they overflow the stack past ~100k) and no per-level scans of all queries.
  const { heads, kvHeads, headDim: d } = c
  const count = c.nodes.length
  const before = new Float64Array(count)
  const firstBlock = new Float64Array(count)
  const usedBlocks = new Float64Array(count)
  let blocks = 0
  for (let n = 0; n < count; n++) {
    const node = c.nodes[n]!
    if (node.parent !== null) before[n] = before[node.parent]! + c.nodes[node.parent]!.length
    const first = before[n]! % blockSize
    const used = node.length === 0 ? 0 : Math.ceil((first + node.length) / blockSize)
    firstBlock[n] = blocks
    usedBlocks[n] = used
    blocks += used
  }

  const row = kvHeads * d
  const kPool = new Float32Array(Math.max(1, blocks) * blockSize * row)
  const vPool = new Float32Array(kPool.length)
  for (let n = 0; n < count; n++) {
    const node = c.nodes[n]!
    for (let t = 0; t < node.length; t++) {
      const p = (before[n]! % blockSize) + t
      const at = ((firstBlock[n]! + Math.floor(p / blockSize)) * blockSize + (p % blockSize)) * row
      for (let i = 0; i < row; i++) {
        kPool[at + i] = node.k[t * row + i]!
        vPool[at + i] = node.v[t * row + i]!
      }
    }
  }

  // each query's path root..node, all in one array: query s holds pathNodes[pathIndptr[s] .. pathIndptr[s + 1])
  const queries = c.queries.length
  const pathIndptr = new Uint32Array(queries + 1)
  let levelCount = 0
  for (let s = 0; s < queries; s++) {
    let depth = 0
    for (let n: number | null = c.queries[s]!.node; n !== null; n = c.nodes[n]!.parent) depth++
    pathIndptr[s + 1] = pathIndptr[s]! + depth
    if (depth > levelCount) levelCount = depth
  }
  const pathNodes = new Int32Array(pathIndptr[queries]!)
  const seqLength = new Uint32Array(queries)
  for (let s = 0; s < queries; s++) {
    let at = pathIndptr[s + 1]!
    let tokens = 0
    for (let n: number | null = c.queries[s]!.node; n !== null; n = c.nodes[n]!.parent) {
      pathNodes[--at] = n
      tokens += c.nodes[n]!.length
    }
    seqLength[s] = tokens
  }

  // A query's partial slots, one per level of its path, in level order.
  const seqPartials = new Uint32Array(pathIndptr[queries]!)
  const levels: Array<LevelPlanLevel> = []
  let queryOffset = 0
  for (let l = 0; l < levelCount; l++) {
    // the level's nodes in the order their first query meets them, each with its queries in order
    const queriesOf = new Map<number, Array<number>>()
    for (let s = 0; s < queries; s++) {
      if (pathIndptr[s]! + l >= pathIndptr[s + 1]!) continue
      const n = pathNodes[pathIndptr[s]! + l]!
      let list = queriesOf.get(n)
      if (list === undefined) queriesOf.set(n, (list = []))
      list.push(s)
    }
    const nodeIds = new Int32Array(queriesOf.size)
    const length = new Uint32Array(queriesOf.size)
    const startSlot = new Uint32Array(queriesOf.size)
    const blockIndptr = new Uint32Array(queriesOf.size + 1)
    const queryIndptr = new Uint32Array(queriesOf.size + 1)
    let k = 0
    for (const n of queriesOf.keys()) {
      nodeIds[k] = n
      length[k] = c.nodes[n]!.length
      startSlot[k] = before[n]! % blockSize
      blockIndptr[k + 1] = blockIndptr[k]! + usedBlocks[n]!
      k++
    }
    const blockIndices = new Uint32Array(blockIndptr[queriesOf.size]!)
    const queryIndices = new Uint32Array(queriesIn(queriesOf))
    let b = 0
    let e = 0
    k = 0
    for (const [n, list] of queriesOf) {
      for (let i = 0; i < usedBlocks[n]!; i++) blockIndices[b++] = firstBlock[n]! + i
      for (const s of list) {
        seqPartials[pathIndptr[s]! + l] = queryOffset + e
        queryIndices[e++] = s
      }
      queryIndptr[++k] = e
    }
    levels.push({ depth: l, nodeIds, length, startSlot, blockIndptr, blockIndices, queryIndptr, queryIndices, queryOffset })
    queryOffset += e
  }
  const q = new Float32Array(queries * heads * d)
  for (let s = 0; s < queries; s++) {
    const src = c.queries[s]!.q
    const at = s * heads * d
    for (let i = 0; i < heads * d; i++) q[at + i] = src[i]!
  }
  return {
    plan: {
      blockSize,
      numSequences: queries,
      levels,
      numPartials: queryOffset,
      seqPartialIndptr: pathIndptr,
      seqPartials,
      pathIndptr,
      pathNodes,
      seqLength
    },
    inputs: { q, kPool, vPool }
  }
}

/** Queries over all of a level's nodes. */
const queriesIn = (queriesOf: ReadonlyMap<number, ReadonlyArray<number>>): number => {
  let total = 0
  for (const list of queriesOf.values()) total += list.length
  return total
}
