/**
 * The prompt tree the page decodes, and the nodes it draws: each node once,
 * with the tokens it adds to its parent's prompt (tokenized as the engine
 * tokenizes it: each node's text on its own, the root's with the BOS token).
 */
import { type PromptTree, type TextTokenizer, walkPromptTree } from "@canopy/runtime/browser"
import type { TreeSettings } from "./settings.ts"

export const promptTree = (settings: TreeSettings): PromptTree => ({
  text: settings.fewShot,
  children: settings.problems.map((text) => ({ text, samples: settings.samples }))
})

export interface DrawnNode {
  /** child indices from the root, as the engine's completions name nodes */
  readonly path: ReadonlyArray<number>
  readonly text: string
  /** tokens this node adds to its parent's prompt */
  readonly tokens: number
  /** tokens of the whole prompt ending here */
  readonly promptTokens: number
  readonly samples: number
  readonly children: ReadonlyArray<DrawnNode>
}

/** Every node of `tree` with its token counts, parents before children. */
export const drawnTree = (tree: PromptTree, tokenizer: TextTokenizer): DrawnNode => {
  const made = new Map<PromptTree, { node: DrawnNode; children: Array<DrawnNode> }>()
  let root: DrawnNode | undefined
  for (const w of walkPromptTree(tree)) {
    const own = w.node.tokens?.length ?? tokenizer.encode(w.node.text ?? "", { addBos: w.parent === undefined }).length
    const parent = w.parent === undefined ? undefined : made.get(w.parent.node)!
    const children: Array<DrawnNode> = []
    const node: DrawnNode = {
      path: parent === undefined ? [] : [...parent.node.path, w.index],
      text: w.node.text ?? "",
      tokens: own,
      promptTokens: (parent?.node.promptTokens ?? 0) + own,
      samples: w.node.samples ?? 0,
      children
    }
    made.set(w.node, { node, children })
    if (parent === undefined) root = node
    else parent.children[w.index] = node
  }
  return root!
}

/** The drawn nodes in document order. */
export const nodesOf = (root: DrawnNode): Array<DrawnNode> => {
  const out: Array<DrawnNode> = []
  const stack = [root]
  while (stack.length > 0) {
    const node = stack.pop()!
    out.push(node)
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!)
  }
  return out
}
