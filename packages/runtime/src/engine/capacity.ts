/**
 * What a request needs of the KV pool: refused before any work when even one
 * sample of its largest prompt cannot fit, and, for the waves scheduling, how
 * many samples one wave may hold.
 */
import { EngineCapacityError } from "./errors.ts"
import type { SharingMode } from "./request.ts"
import type { SampleGroup } from "./tokenize.ts"

/** Blocks one sample's own tokens take: they start in a fresh block at its prompt's end slot. */
export const sampleBlocks = (maxTokens: number, blockSize: number): number => Math.ceil((blockSize - 1 + maxTokens) / blockSize)

const promptBlocks = (prompts: ReadonlyArray<ReadonlyArray<number>>, blockSize: number, sharing: SharingMode): number =>
  sharing === "tree" ? treeBlocks(prompts, blockSize) : prompts.reduce((n, p) => n + Math.ceil(p.length / blockSize), 0)

/** Refuses a request that could never fit: its largest prompt and one sample of it exceed the whole pool. */
export const checkFits = (groups: ReadonlyArray<SampleGroup>, capacity: number, blockSize: number): void => {
  for (const g of groups) {
    const needed = Math.ceil(g.prompt.length / blockSize) + 2 + sampleBlocks(g.sampling.maxTokens, blockSize)
    if (needed > capacity) {
      throw new EngineCapacityError({
        neededBlocks: needed,
        capacityBlocks: capacity,
        blockSize,
        reason: `one prompt (${g.prompt.length} tokens) and one sample of ${g.sampling.maxTokens} tokens exceed the KV pool (give the cache more memory: kvMemoryBytes, or --kv-memory on the command line)`
      })
    }
  }
}

/** Samples per wave: the batch limit, or what the pool holds next to all the prompts. */
export const waveSize = (groups: ReadonlyArray<SampleGroup>, capacity: number, blockSize: number, maxBatch: number, sharing: SharingMode): number => {
  let perSample = 1
  for (const g of groups) perSample = Math.max(perSample, sampleBlocks(g.sampling.maxTokens, blockSize))
  const all = promptBlocks(groups.map((g) => g.prompt), blockSize, sharing)
  return Math.max(1, Math.min(maxBatch, Math.floor((capacity - all) / perSample)))
}

/** Blocks the prompts take in a trie: distinct prefixes, plus a partial block and a split copy per branch. */
const treeBlocks = (prompts: ReadonlyArray<ReadonlyArray<number>>, blockSize: number): number => {
  const root = new Map<number, unknown>()
  let distinct = 0
  let branches = 0
  for (const p of prompts) {
    let node = root
    for (const t of p) {
      let next = node.get(t) as Map<number, unknown> | undefined
      if (next === undefined) {
        if (node.size > 0) branches++
        next = new Map()
        node.set(t, next)
        distinct++
      }
      node = next
    }
  }
  return Math.ceil(distinct / blockSize) + 2 * (branches + prompts.length)
}
