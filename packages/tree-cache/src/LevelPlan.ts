/**
 * The flat, GPU-ready description of which KV each live sequence attends,
 * grouped by tree level (depth). Produced by `planLevels`, consumed by the
 * attention kernels; every array uploads to the GPU as is.
 *
 * KV addressing: the KV of a node is a run of `length` tokens stored in the
 * blocks of its block table, starting at slot `startSlot` of the first block.
 * Token t (0-based within the node) lives in
 *     block = blockIndices[blockIndptr[n] + ⌊(startSlot[n] + t) / blockSize⌋]
 *     slot  = (startSlot[n] + t) mod blockSize
 * Invariant: startSlot of a node = (number of tokens on its ancestors) mod
 * blockSize, i.e. every token sits at the slot of its absolute position.
 *
 * Query rows: level l's node n is attended by the sequences
 *     queryIndices[queryIndptr[n] .. queryIndptr[n+1])   (sequence indices 0..S-1)
 * A kernel expands each sequence into its query heads itself.
 *
 * Partial states: each (level, node, query entry) yields one partial state.
 * Its slot is the entry's global position: `level.queryOffset + k`, where k is
 * the index into that level's queryIndices. Sequence s's partial slots are
 *     seqPartials[seqPartialIndptr[s] .. seqPartialIndptr[s+1])
 * ordered root → leaf; the merge combines exactly those.
 */
export interface LevelPlanLevel {
  /** depth in the tree (0 = roots) */
  readonly depth: number
  /** tree node ids of this level, one per planned node */
  readonly nodeIds: Int32Array
  /** tokens held by each node */
  readonly length: Uint32Array
  /** slot of the node's first token within its first block */
  readonly startSlot: Uint32Array
  /** CSR over nodes: blockIndices[blockIndptr[n] .. blockIndptr[n+1]) is node n's block table */
  readonly blockIndptr: Uint32Array
  readonly blockIndices: Uint32Array
  /** CSR over nodes: the sequences attending node n */
  readonly queryIndptr: Uint32Array
  readonly queryIndices: Uint32Array
  /**
   * Optional, parallel to queryIndices: how many of the node's tokens the entry
   * may see (causal prefill of a node's own tokens). Absent: all of them.
   */
  readonly queryKvLimit?: Uint32Array
  /** global partial-state slot of this level's first query entry */
  readonly queryOffset: number
}

export interface LevelPlan {
  readonly blockSize: number
  /** live sequences planned, in the order given to planLevels (index = query row) */
  readonly numSequences: number
  readonly levels: ReadonlyArray<LevelPlanLevel>
  /** total partial states = Σ levels' queryIndices.length */
  readonly numPartials: number
  /** CSR over sequences: their partial-state slots, root → leaf */
  readonly seqPartialIndptr: Uint32Array
  readonly seqPartials: Uint32Array
  /** CSR over sequences: their path's node ids, root → leaf */
  readonly pathIndptr: Uint32Array
  readonly pathNodes: Int32Array
  /** tokens on each sequence's path (its context length) */
  readonly seqLength: Uint32Array
}
