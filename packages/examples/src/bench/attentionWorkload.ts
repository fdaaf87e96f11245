/**
 * The workload of the attention benchmark: one shared prefix node with
 * `batch` leaves under it, each holding its own suffix — the shape of n
 * samples decoded from one prompt.
 */
import type { LevelPlan } from "@canopy/tree-cache"
import { BlockPool, planLevels, PrefixTree } from "@canopy/tree-cache"

export interface SweepPoint {
  readonly batch: number
  readonly prefix: number
  readonly suffix: number
}

export interface SharedPrefixWorkload {
  readonly plan: LevelPlan
  /** blocks the pools must hold: one past the largest block index the plan reads */
  readonly poolBlocks: number
}

/** Every combination of the lists, batch varying fastest (so a chart's series fill in point by point). */
export const gridPoints = (
  batches: ReadonlyArray<number>,
  prefixes: ReadonlyArray<number>,
  suffixes: ReadonlyArray<number>
): ReadonlyArray<SweepPoint> =>
  prefixes.flatMap((prefix) => suffixes.flatMap((suffix) => batches.map((batch) => ({ batch, prefix, suffix }))))

/** Blocks a prefix node plus `batch` suffix leaves can need (a leaf starting mid-block gets a fresh block). */
const blocksNeeded = (point: SweepPoint, blockSize: number): number =>
  Math.ceil(point.prefix / blockSize) + point.batch * (Math.ceil(point.suffix / blockSize) + 1)

export const sharedPrefixWorkload = (point: SweepPoint, blockSize: number): SharedPrefixWorkload => {
  const { batch, prefix, suffix } = point
  const tree = new PrefixTree(new BlockPool({ numBlocks: blocksNeeded(point, blockSize), blockSize }))
  // Token ids only decide sharing: the prefix is 0..prefix-1, every suffix a
  // run no other sequence uses, so the leaves share exactly the prefix.
  const root = tree.insert(Array.from({ length: prefix }, (_, i) => i)).seq
  const seqs = Array.from({ length: batch }, (_, b) => {
    const seq = tree.fork(root)
    if (suffix > 0) tree.append(seq, Array.from({ length: suffix }, (_, i) => prefix + b * suffix + i))
    return seq
  })
  const plan = planLevels(tree, seqs)
  let maxBlock = -1
  for (const level of plan.levels) for (const block of level.blockIndices) maxBlock = Math.max(maxBlock, block)
  return { plan, poolBlocks: maxBlock + 1 }
}
