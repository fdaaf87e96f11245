/**
 * From a prompt tree to engine requests. The engine samples one request with
 * one set of sampling settings, so nodes are grouped by their settings: nodes
 * that agree decode together in one batch, and each further group is another
 * request whose shared prefixes are already in the engine's cache.
 */
import type { PromptTree, SamplingOptions } from "../index.ts"
import type { NodeSampling, PromptNode } from "./PromptNode.ts"

export interface NodeRequest {
  readonly tree: PromptTree
  readonly sampling: NodeSampling
  /** The node behind each engine path (child indices joined by "/"). */
  readonly nodes: ReadonlyMap<string, PromptNode>
}

export const pathKey = (path: ReadonlyArray<number>): string => path.join("/")

const settingsKey = (sampling: NodeSampling): string =>
  JSON.stringify(Object.entries(sampling).filter(([, v]) => v !== undefined).sort(([a], [b]) => a.localeCompare(b)))

const pieceOf = (node: PromptNode): PromptTree =>
  typeof node.piece === "string" ? { text: node.piece } : { tokens: node.piece.tokens }

/** The tree pruned to the branches leading to `wanted`, which alone ask for samples. */
const pruned = (
  node: PromptNode,
  wanted: ReadonlySet<PromptNode>,
  path: ReadonlyArray<number>,
  nodes: Map<string, PromptNode>
): PromptTree | undefined => {
  const children: Array<PromptTree> = []
  for (const kid of node.children) {
    const sub = pruned(kid, wanted, [...path, children.length], nodes)
    if (sub !== undefined) children.push(sub)
  }
  const asks = wanted.has(node)
  if (!asks && children.length === 0) return undefined
  if (asks) nodes.set(pathKey(path), node)
  return { ...pieceOf(node), ...(asks ? { samples: node.samples } : {}), ...(children.length > 0 ? { children } : {}) }
}

/** One request per distinct sampling setting, in the order their first node appears. */
export const planRequests = (root: PromptNode, defaults: Partial<SamplingOptions> = {}): ReadonlyArray<NodeRequest> => {
  const groups = new Map<string, { sampling: NodeSampling; nodes: Set<PromptNode> }>()
  for (const node of root.walk()) {
    if (node.samples === 0) continue
    const sampling = { ...defaults, ...node.sampling }
    const key = settingsKey(sampling)
    const group = groups.get(key) ?? { sampling, nodes: new Set() }
    group.nodes.add(node)
    groups.set(key, group)
  }
  return [...groups.values()].map(({ sampling, nodes: wanted }) => {
    const nodes = new Map<string, PromptNode>()
    const tree = pruned(root, wanted, [], nodes)!
    return { tree, sampling, nodes }
  })
}
