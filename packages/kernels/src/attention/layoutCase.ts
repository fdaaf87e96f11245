/**
 * Lays an attention case given as a tree of nodes with their own K/V (the
 * oracle's form) into paged pools and a LevelPlan, as the engine's trie would:
 * each node's tokens in blocks of its own, token t of a node at slot
 * (tokens on its ancestors + t) mod blockSize.
 */
import type { LevelPlan, LevelPlanLevel } from "@canopy/tree-cache"
import type { PooledInputs, TreeAttentionCase } from "./reference.ts"

export const layoutCase = (c: TreeAttentionCase, blockSize: number): { plan: LevelPlan; inputs: PooledInputs } => {
  const { heads, kvHeads, headDim: d } = c
  const count = c.nodes.length
  const before = new Array<number>(count).fill(0)
  const tables: Array<Array<number>> = []
  let blocks = 0
  c.nodes.forEach((node, n) => {
    if (node.parent !== null) {
      before[n] = before[node.parent]! + c.nodes[node.parent]!.length
    }
    const first = before[n]! % blockSize
    const used = node.length === 0 ? 0 : Math.ceil((first + node.length) / blockSize)
    tables.push(Array.from({ length: used }, (_, i) => blocks + i))
    blocks += used
  })

  const row = kvHeads * d
  const kPool = new Float32Array(Math.max(1, blocks) * blockSize * row)
  const vPool = new Float32Array(kPool.length)
  c.nodes.forEach((node, n) => {
    for (let t = 0; t < node.length; t++) {
      const p = (before[n]! % blockSize) + t
      const at = (tables[n]![Math.floor(p / blockSize)]! * blockSize + (p % blockSize)) * row
      kPool.set(Array.from({ length: row }, (_, i) => node.k[t * row + i]!), at)
      vPool.set(Array.from({ length: row }, (_, i) => node.v[t * row + i]!), at)
    }
  })

  const paths = c.queries.map((q) => {
    const path: Array<number> = []
    for (let n: number | null = q.node; n !== null; n = c.nodes[n]!.parent) path.unshift(n)
    return path
  })
  const levelCount = Math.max(0, ...paths.map((p) => p.length))
  const levels: Array<LevelPlanLevel> = []
  const partialOf: Array<Array<number>> = paths.map(() => [])
  let queryOffset = 0
  for (let l = 0; l < levelCount; l++) {
    const nodes = [...new Set(paths.flatMap((p) => (p.length > l ? [p[l]!] : [])))]
    const blockIndptr = [0]
    const blockIndices: Array<number> = []
    const queryIndptr = [0]
    const queryIndices: Array<number> = []
    for (const n of nodes) {
      blockIndices.push(...tables[n]!)
      blockIndptr.push(blockIndices.length)
      paths.forEach((p, s) => {
        if (p[l] !== n) return
        partialOf[s]!.push(queryOffset + queryIndices.length)
        queryIndices.push(s)
      })
      queryIndptr.push(queryIndices.length)
    }
    levels.push({
      depth: l,
      nodeIds: Int32Array.from(nodes),
      length: Uint32Array.from(nodes, (n) => c.nodes[n]!.length),
      startSlot: Uint32Array.from(nodes, (n) => before[n]! % blockSize),
      blockIndptr: Uint32Array.from(blockIndptr),
      blockIndices: Uint32Array.from(blockIndices),
      queryIndptr: Uint32Array.from(queryIndptr),
      queryIndices: Uint32Array.from(queryIndices),
      queryOffset
    })
    queryOffset += queryIndices.length
  }
  const seqPartialIndptr = new Uint32Array(paths.length + 1)
  paths.forEach((p, s) => (seqPartialIndptr[s + 1] = seqPartialIndptr[s]! + p.length))
  const q = new Float32Array(c.queries.length * heads * d)
  c.queries.forEach((query, s) => q.set(Array.from({ length: heads * d }, (_, i) => query.q[i]!), s * heads * d))
  return {
    plan: {
      blockSize,
      numSequences: c.queries.length,
      levels,
      numPartials: queryOffset,
      seqPartialIndptr,
      seqPartials: Uint32Array.from(partialOf.flat()),
      pathIndptr: seqPartialIndptr,
      pathNodes: Int32Array.from(paths.flat()),
      seqLength: Uint32Array.from(paths, (p) => p.reduce((sum, n) => sum + c.nodes[n]!.length, 0))
    },
    inputs: { q, kPool, vPool }
  }
}
