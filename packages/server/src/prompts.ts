/**
 * From what a client sent to the one prompt tree the engine runs.
 *
 * Every prompt is tokenized whole, with the BOS the tokenizer asks for, and
 * goes to the engine as token ids: tokenizing pieces separately gives other
 * tokens at the seams (a BPE merge across the boundary, a SentencePiece space)
 * than the model saw in training. Sharing is then found on the tokens: the
 * prompts of one request become one tree whose root holds their longest
 * common token prefix, so the engine prefills it once.
 */
import { type PromptTree, type TextTokenizer, walkPromptTree, type WalkedNode } from "@canopy/runtime"
import { InvalidRequest } from "./errors.ts"
import type { PromptInput } from "./requests.ts"

export interface TokenPrompt {
  readonly tokens: ReadonlyArray<number>
  /** the prompt as text (a token prompt decoded), for `echo` */
  readonly text: string
}

/** Tokenizes each prompt whole (BOS first when the tokenizer has one); token prompts are taken as given, checked against the vocabulary. */
export const tokenizePrompts = (
  prompts: ReadonlyArray<PromptInput>, tokenizer: TextTokenizer, vocabSize: number
): Array<TokenPrompt> =>
  prompts.map((p, i) => {
    const param = prompts.length === 1 ? "prompt" : `prompt[${i}]`
    if ("text" in p) return { tokens: tokenizer.encode(p.text), text: p.text }
    p.tokens.forEach((t, j) => {
      if (t >= vocabSize) throw new InvalidRequest({ param: `${param}[${j}]`, problem: `token id ${t} is outside the vocabulary (0..${vocabSize - 1})` })
    })
    return { tokens: p.tokens, text: tokenizer.decode(p.tokens) }
  })

/**
 * A prompt plus up to `maxTokens` new tokens must fit the model's positions;
 * said here, before the request waits in the queue, in OpenAI's words.
 */
export const checkContext = (
  prompts: ReadonlyArray<{ readonly tokens: ReadonlyArray<number> }>, maxTokens: number, maxPositions: number, promptParam = "prompt"
): void => {
  prompts.forEach((p, i) => {
    const param = prompts.length === 1 ? promptParam : `${promptParam}[${i}]`
    const length = p.tokens.length
    if (length >= maxPositions) {
      throw new InvalidRequest({
        param,
        problem: `This model's maximum context length is ${maxPositions} tokens, and the prompt has ${length}: no room for a completion. Shorten the prompt.`,
        code: "context_length_exceeded"
      })
    }
    if (length + maxTokens > maxPositions) {
      throw new InvalidRequest({
        param: "max_tokens",
        problem: `This model's maximum context length is ${maxPositions} tokens. However, you requested ${length + maxTokens} tokens ` +
          `(${length} in the ${param}, ${maxTokens} for the completion). Lower max_tokens to at most ${maxPositions - length}, or shorten the prompt.`,
        code: "context_length_exceeded"
      })
    }
  })
}

const commonPrefixLength = (a: ReadonlyArray<number>, b: ReadonlyArray<number>, limit: number): number => {
  const end = Math.min(limit, a.length, b.length)
  let i = 0
  while (i < end && a[i] === b[i]) i++
  return i
}

/** A request's prompts as one tree, and which prompt each of its sampling nodes is. */
export interface RequestTree {
  readonly tree: PromptTree
  /** the prompt index of the sampling node at this path (`path.join(".")`) */
  readonly promptOf: ReadonlyMap<string, number>
}

export const pathKey = (path: ReadonlyArray<number>): string => path.join(".")

/**
 * One prompt: a single node with `samples: n`. Several: a root holding their
 * longest common token prefix and one child per prompt with the rest of its
 * tokens (possibly none) and `samples: n`.
 */
export const promptsTree = (prompts: ReadonlyArray<ReadonlyArray<number>>, n: number): RequestTree => {
  if (prompts.length === 1) return { tree: { tokens: prompts[0]!, samples: n }, promptOf: new Map([["", 0]]) }
  let shared = prompts[0]!.length
  for (const p of prompts) shared = commonPrefixLength(prompts[0]!, p, shared)
  const promptOf = new Map<string, number>()
  const children = prompts.map((p, i) => {
    promptOf.set(pathKey([i]), i)
    return { tokens: p.slice(shared), samples: n }
  })
  return { tree: { tokens: prompts[0]!.slice(0, shared), children }, promptOf }
}

/** A client's prompt tree with its prompts tokenized whole, and the client's path of each sampling node. */
export interface RetokenizedTree {
  readonly tree: PromptTree
  /** the client's path of the sampling node at this engine path (`path.join(".")`) */
  readonly clientPath: ReadonlyMap<string, ReadonlyArray<number>>
  /** each sampling node's whole prompt, by the client's path */
  readonly prompts: ReadonlyArray<{ readonly path: ReadonlyArray<number>; readonly tokens: ReadonlyArray<number> }>
}

/**
 * The prompt ending at a node: its path's pieces, each run of text nodes
 * joined and tokenized as one (with the BOS when the run starts the prompt),
 * token nodes as they are. A root with neither is the empty text, as the
 * engine reads it.
 */
const wholePrompt = (w: WalkedNode, tokenizer: TextTokenizer): Array<number> => {
  const chain: Array<WalkedNode> = []
  for (let at: WalkedNode | undefined = w; at !== undefined; at = at.parent) chain.push(at)
  chain.reverse()
  const out: Array<number> = []
  let text: string | undefined
  let textAtStart = false
  const flush = () => {
    if (text !== undefined) for (const t of tokenizer.encode(text, { addBos: textAtStart })) out.push(t)
    text = undefined
  }
  for (const { node, parent } of chain) {
    if (node.tokens !== undefined) {
      flush()
      for (const t of node.tokens) out.push(t)
    } else if (node.text !== undefined || parent === undefined) {
      if (text === undefined) {
        text = ""
        textAtStart = out.length === 0 && parent === undefined
      }
      text += node.text ?? ""
    }
  }
  flush()
  return out
}

/**
 * The client's tree, shape kept (so its paths still name its nodes), with
 * each node's tokens the common prefix of the whole prompts below it. Where a
 * node's own prompt does not end at that prefix (its descendants' text merges
 * across its end into other tokens), its samples move to an extra last child
 * holding the rest of its tokens.
 */
export const retokenizeTree = (tree: PromptTree, tokenizer: TextTokenizer): RetokenizedTree => {
  const walked = Array.from(walkPromptTree(tree))
  const own = new Map<WalkedNode, Array<number>>()
  /** per node: a prompt below it and how much of it all prompts below share */
  const shared = new Map<WalkedNode, { readonly ref: ReadonlyArray<number>; readonly length: number }>()
  const prompts: Array<{ path: ReadonlyArray<number>; tokens: ReadonlyArray<number> }> = []
  const pathOf = (w: WalkedNode): Array<number> => {
    const p: Array<number> = []
    for (let at: WalkedNode | undefined = w; at?.parent !== undefined; at = at.parent) p.push(at.index)
    return p.reverse()
  }
  for (const w of walked) {
    if ((w.node.samples ?? 0) === 0) continue
    const tokens = wholePrompt(w, tokenizer)
    own.set(w, tokens)
    prompts.push({ path: pathOf(w), tokens })
  }
  // Children come after their parents in the walk: backwards, each node's prefix is final before its parent reads it.
  const merge = (w: WalkedNode, ref: ReadonlyArray<number>, length: number) => {
    const s = shared.get(w)
    shared.set(w, s === undefined ? { ref, length } : { ref: s.ref, length: commonPrefixLength(s.ref, ref, Math.min(s.length, length)) })
  }
  for (let i = walked.length - 1; i >= 0; i--) {
    const w = walked[i]!
    const tokens = own.get(w)
    if (tokens !== undefined) merge(w, tokens, tokens.length)
    const s = shared.get(w)
    if (s !== undefined && w.parent !== undefined) merge(w.parent, s.ref, s.length)
  }
  const clientPath = new Map<string, ReadonlyArray<number>>()
  type Built = { tokens: ReadonlyArray<number>; samples?: number; firstSample?: number; sampling?: NonNullable<PromptTree["sampling"]>; children: Array<PromptTree> }
  const built = new Map<WalkedNode, { node: Built }>()
  let root: PromptTree = { tokens: [] }
  for (const w of walked) {
    const s = shared.get(w)
    // A node with prompts below it has a parent with them too, so the parent's prefix is there.
    const start = s === undefined || w.parent === undefined ? 0 : shared.get(w.parent)!.length
    const node: Built = {
      tokens: s === undefined ? [] : s.ref.slice(start, s.length),
      // the client's settings hold at and below its node, wherever its samples end up
      ...(w.node.sampling !== undefined ? { sampling: w.node.sampling } : {}),
      children: []
    }
    built.set(w, { node })
    if (w.parent === undefined) root = node
    else built.get(w.parent)!.node.children[w.index] = node
    const tokens = own.get(w)
    if (tokens === undefined) continue
    const path = pathOf(w)
    const first = w.node.firstSample !== undefined ? { firstSample: w.node.firstSample } : {}
    if (tokens.length === s!.length) {
      node.samples = w.node.samples!
      Object.assign(node, first)
      clientPath.set(pathKey(path), path)
    } else {
      const extra = { tokens: tokens.slice(s!.length), samples: w.node.samples!, ...first }
      // After every child the client gave, so their indices stay theirs.
      const index = w.node.children?.length ?? 0
      node.children[index] = extra
      clientPath.set(pathKey([...path, index]), path)
    }
  }
  // Children the client gave that ask for nothing below them stay as empty nodes, keeping the indices.
  for (const { node } of built.values()) {
    for (let i = 0; i < node.children.length; i++) node.children[i] ??= { tokens: [] }
  }
  return { tree: root, clientPath, prompts }
}
