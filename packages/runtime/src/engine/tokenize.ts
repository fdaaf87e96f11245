/**
 * From a prompt tree to sample groups: one per node that asks for samples,
 * with its whole prompt in tokens and its resolved sampling settings.
 *
 * A prompt is tokenized the way the model expects it: each run of text pieces
 * along the path (the root's with the BOS) is joined and tokenized as one
 * string, never piece by piece. Tokenizers that merge across piece boundaries
 * (SentencePiece's leading-space marker, BPE merges) give the joined text
 * other tokens than the pieces' concatenation; the prefix trie then finds
 * whatever the prompts really share.
 */
import type { LoadedModel } from "../model/model.ts"
import { ContextTooLong } from "./errors.ts"
import { addSamples, checkDepth, InvalidPromptTree, jsonPathOf, pathOf, type PromptTree, walkPromptTree, type WalkedNode } from "./PromptTree.ts"
import type { SamplingOptions } from "./request.ts"
import { checkSamplingOverrides, definedOnly, groupSeed } from "./sampling.ts"

export interface SampleGroup {
  readonly index: number
  /** child indices from the root to the node */
  readonly path: ReadonlyArray<number>
  readonly prompt: ReadonlyArray<number>
  readonly samples: number
  /** the number of the group's first sample */
  readonly firstSample: number
  /** the request's settings with the overrides of the node and its ancestors; `seed` is the group's own (groupSeed) */
  readonly sampling: SamplingOptions
}

export const tokenizeTree = (model: LoadedModel, root: PromptTree, requestSampling: SamplingOptions): Array<SampleGroup> => {
  const vocab = model.config.vocabSize
  const maxPositions = model.config.maxPositionEmbeddings
  const groups: Array<SampleGroup> = []
  let total = 0
  for (const w of walkPromptTree(root)) {
    // A tree built in code never went through parsePromptTree: the same bounds, checked here.
    checkDepth(w)
    checkTokenIds(w, vocab)
    const samples = w.node.samples ?? 0
    if (samples === 0) continue
    total = addSamples(w, total, samples)
    const sampling = samplingOf(w, requestSampling, vocab)
    const prompt = promptOf(model, w)
    if (prompt.length === 0) throw new InvalidPromptTree({ path: jsonPathOf(w), problem: "asks for samples of an empty prompt" })
    if (prompt.length + sampling.maxTokens > maxPositions) {
      throw new ContextTooLong({ path: pathOf(w), promptTokens: prompt.length, maxTokens: sampling.maxTokens, maxPositions })
    }
    const firstSample = w.node.firstSample ?? 0
    if (!Number.isInteger(firstSample) || firstSample < 0 || firstSample + samples > 0x100000000) {
      throw new InvalidPromptTree({ path: `${jsonPathOf(w)}.firstSample`, problem: `must be an integer ≥ 0 with firstSample + samples ≤ 2³², got ${firstSample}` })
    }
    const index = groups.length
    const seed = groupSeed(sampling.seed, w.node.sampling?.seed, index)
    groups.push({ index, path: pathOf(w), prompt, samples, firstSample, sampling: { ...sampling, seed } })
  }
  if (groups.length === 0) throw new InvalidPromptTree({ path: "$", problem: `asks for no samples: give some node "samples": N` })
  return groups
}

const checkTokenIds = (w: WalkedNode, vocab: number): void => {
  const tokens = w.node.tokens
  if (tokens === undefined) return
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) {
      throw new InvalidPromptTree({ path: jsonPathOf(w), problem: `token ${t} is outside the vocabulary (0..${vocab - 1})` })
    }
  }
}

/** The request's sampling with each ancestor's overrides, root first, then the node's own. */
const samplingOf = (w: WalkedNode, request: SamplingOptions, vocab: number): SamplingOptions => {
  const chain: Array<WalkedNode> = []
  for (let at: WalkedNode | undefined = w; at !== undefined; at = at.parent) if (at.node.sampling !== undefined) chain.push(at)
  let merged: SamplingOptions = request
  for (let i = chain.length - 1; i >= 0; i--) {
    const own = checkSamplingOverrides(chain[i]!.node.sampling, `${jsonPathOf(chain[i]!)}.sampling.`, vocab)
    merged = { ...merged, ...definedOnly(own) }
  }
  return merged
}

/** The node's whole prompt: text runs joined and tokenized as one string each, token runs as given. */
const promptOf = (model: LoadedModel, w: WalkedNode): Array<number> => {
  const path: Array<PromptTree> = []
  for (let at: WalkedNode | undefined = w; at !== undefined; at = at.parent) path.push(at.node)
  path.reverse()
  const tok = model.tokenizer
  const prompt: Array<number> = []
  let text: string | undefined = path[0]!.tokens === undefined ? "" : undefined
  let textAtRoot = text !== undefined
  const flush = (): void => {
    if (text === undefined) return
    for (const t of tok.encode(text, { addBos: textAtRoot })) prompt.push(t)
    text = undefined
    textAtRoot = false
  }
  for (const node of path) {
    if (node.tokens !== undefined) {
      flush()
      for (const t of node.tokens) prompt.push(t)
    } else {
      text = (text ?? "") + (node.text ?? "")
    }
  }
  flush()
  return prompt
}
