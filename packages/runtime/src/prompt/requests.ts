/**
 * From a prompt tree to one engine request. The engine decodes samples with
 * different settings in one batch, so every node that asks for samples goes
 * into the same request, with its own settings as its tree node's `sampling`;
 * text pieces stay text, so the engine tokenizes each prompt whole.
 */
import type { PromptTree, SamplingOptions } from "../index.ts"
import type { NodeSampling, PromptNode } from "./PromptNode.ts"

export interface NodeRequest {
  readonly tree: PromptTree
  /** the run's settings, for every node that does not set its own */
  readonly sampling: NodeSampling
  /** The node behind each engine path (child indices joined by "/"). */
  readonly nodes: ReadonlyMap<string, PromptNode>
}

export const pathKey = (path: ReadonlyArray<number>): string => path.join("/")

const pieceOf = (node: PromptNode): PromptTree =>
  typeof node.piece === "string" ? { text: node.piece } : { tokens: node.piece.tokens }

const ownSettings = (node: PromptNode): NodeSampling | undefined => {
  const set = Object.entries(node.sampling).filter(([, v]) => v !== undefined)
  return set.length === 0 ? undefined : Object.fromEntries(set)
}

/** The nodes that ask for samples and their ancestors: the branches a request keeps. */
const leadingToSamples = (root: PromptNode): Set<PromptNode> => {
  const kept = new Set<PromptNode>()
  for (const node of root.walk()) {
    if (node.samples === 0) continue
    for (let at: PromptNode | undefined = node; at !== undefined && !kept.has(at); at = at === root ? undefined : at.parent) kept.add(at)
  }
  return kept
}

/**
 * The kept subtree at `node`. A tree node's `sampling` also applies below it,
 * while a PromptNode's settings are its own: a node with settings and kept
 * children holds its samples in an extra first child with no tokens (the same
 * prompt, and the same place in the walk, so the same sample numbering and seeds).
 */
const build = (node: PromptNode, path: ReadonlyArray<number>, kept: ReadonlySet<PromptNode>, nodes: Map<string, PromptNode>): PromptTree => {
  const kids = node.children.filter((kid) => kept.has(kid))
  const asks = node.samples > 0
  const sampling = asks ? ownSettings(node) : undefined
  const holder = sampling !== undefined && kids.length > 0
  const children: Array<PromptTree> = holder ? [{ tokens: [], samples: node.samples, sampling }] : []
  if (asks) nodes.set(pathKey(holder ? [...path, 0] : path), node)
  for (const kid of kids) children.push(build(kid, [...path, children.length], kept, nodes))
  return {
    ...pieceOf(node),
    ...(asks && !holder ? { samples: node.samples, ...(sampling !== undefined ? { sampling } : {}) } : {}),
    ...(children.length > 0 ? { children } : {})
  }
}

/**
 * The whole tree as one request, pruned to the branches that lead to samples:
 * `defaults` as the request's settings, each node's own on its samples. A node
 * that sets its own seed keeps it as given (the engine mixes only an inherited
 * seed with the node's index), as the sampling pipeline's problem nodes and
 * the queue's jobs need.
 */
export const planRequest = (root: PromptNode, defaults: Partial<SamplingOptions> = {}): NodeRequest => {
  const nodes = new Map<string, PromptNode>()
  const tree = build(root, [], leadingToSamples(root), nodes)
  return { tree, sampling: defaults, nodes }
}
