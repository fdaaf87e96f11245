/**
 * The KV memory the tree saves. A per-sequence cache holds every sample's
 * whole prompt and its own tokens; the prefix trie holds each prompt node
 * once, plus each sample's own tokens. Both are counted in tokens times the
 * bytes one token's K and V take in every layer, so the figures are the
 * cache's content, whatever its block rounding. A node no sample lies below
 * is never prefilled, so it is not counted.
 */
import type { KvDtype, ModelConfig } from "@canopy/runtime/browser"
import { type DrawnNode, nodesOf } from "./tree.ts"

/** Bytes of one token's keys and values over all layers. */
export const kvBytesPerToken = (config: ModelConfig, kvDtype: KvDtype): number =>
  2 * config.numLayers * config.numKvHeads * config.headDim * (kvDtype === "f32" ? 4 : 2)

export interface KvFigures {
  /** bytes the prefix trie holds: every prompt node once, and each sample's generated tokens */
  readonly treeBytes: number
  /** bytes a cache with one full copy per sequence would hold */
  readonly perSequenceBytes: number
}

/** The two caches' sizes once `generated` tokens have been sampled in all. */
export const kvFigures = (root: DrawnNode, generated: number, bytesPerToken: number): KvFigures => {
  const nodes = nodesOf(root)
  // A node is cached only when some sample lies at or below it: children come after parents, so count bottom up.
  const below = new Map<DrawnNode, number>()
  let shared = 0
  let copied = 0
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!
    const samples = node.children.reduce((n, child) => n + below.get(child)!, node.samples)
    below.set(node, samples)
    if (samples > 0) shared += node.tokens
    copied += node.samples * node.promptTokens
  }
  return { treeBytes: (shared + generated) * bytesPerToken, perSequenceBytes: (copied + generated) * bytesPerToken }
}

const UNITS = ["B", "KiB", "MiB", "GiB"] as const

export const formatBytes = (bytes: number): string => {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`
}

/** One line for the page: both sizes, and what sharing saved. */
export const describeKv = ({ treeBytes, perSequenceBytes }: KvFigures): string => {
  const saved = perSequenceBytes - treeBytes
  const share = perSequenceBytes === 0 ? 0 : (100 * saved) / perSequenceBytes
  return `KV cache ${formatBytes(treeBytes)} in the tree vs ${formatBytes(perSequenceBytes)} per sequence: ` +
    `${formatBytes(saved)} (${share.toFixed(0)}%) saved by sharing the prompts`
}
