/**
 * The engine's input: a tree of prompt pieces. Each node is a text or a token
 * run appended to its parent's prompt; a node that asks for `samples` gets
 * that many completions of the prompt ending at it.
 *
 *   { "text": "few-shot…", "children": [ { "text": "problem 1", "samples": 4 }, … ] }
 *
 * Trees come from files and the network, so every walk here is iterative (a
 * tree thousands of levels deep must not overflow the stack) and the total
 * number of samples is bounded before anything is built for them.
 */
import { Data } from "effect"
import type { SamplingOptions } from "./request.ts"
import { checkSamplingOverrides } from "./sampling.ts"

export interface PromptTree {
  readonly text?: string
  readonly tokens?: ReadonlyArray<number>
  readonly samples?: number
  /**
   * The index of this node's first sample (default 0): its samples are
   * numbered firstSample, firstSample + 1, … in completions, and each one's
   * randomness is keyed by its node's seed and that number alone, so samples
   * split over several requests (jobs of one run) are the samples one request would draw.
   */
  readonly firstSample?: number
  /** overrides of the request's sampling for the samples of this node and its descendants */
  readonly sampling?: Partial<SamplingOptions>
  readonly children?: ReadonlyArray<PromptTree>
}

/** The most samples one request may ask for, over all its nodes. */
export const MAX_REQUEST_SAMPLES = 1_000_000

export class InvalidPromptTree extends Data.TaggedError("InvalidPromptTree")<{
  readonly path: string
  readonly problem: string
}> {
  override get message(): string {
    return `prompt tree ${this.path}: ${this.problem}`
  }
}

/** A node of the tree with its position (child indices from the root). */
export interface PromptLeaf {
  readonly path: ReadonlyArray<number>
  readonly samples: number
}

const KEYS = ["text", "tokens", "samples", "firstSample", "sampling", "children"] as const

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

/** How JSON shows a value in a message; JSON.parse reads 1e999 as Infinity, which JSON.stringify would print as null. */
const shown = (x: unknown): string => (typeof x === "number" && !Number.isFinite(x) ? String(x) : JSON.stringify(x) ?? String(x))

const fail = (path: string, problem: string): never => {
  throw new InvalidPromptTree({ path, problem })
}

/** One node's own fields, checked (its children are parsed by the caller's loop); `at` spells its path when a message needs it. */
const parseNode = (input: unknown, at: () => string, vocabSize: number | undefined): Omit<PromptTree, "children"> & { children?: Array<unknown> } => {
  if (!isRecord(input)) fail(at(), "must be an object")
  const node = input as Record<string, unknown>
  for (const k of Object.keys(node)) {
    if (!(KEYS as ReadonlyArray<string>).includes(k)) {
      const near = KEYS.find((known) => known.startsWith(k) || k.startsWith(known))
      fail(at(), `unknown key ${JSON.stringify(k)}${near !== undefined ? ` (did you mean "${near}"?)` : ""}; a node has ${KEYS.map((x) => `"${x}"`).join(", ")}`)
    }
  }
  const { text, tokens, samples, firstSample, sampling, children } = node
  if (text !== undefined && tokens !== undefined) fail(at(), `has both "text" and "tokens"; give one`)
  if (text !== undefined && typeof text !== "string") fail(`${at()}.text`, `must be a string, got ${shown(text)}`)
  if (tokens !== undefined) {
    if (!Array.isArray(tokens)) fail(`${at()}.tokens`, "must be an array of token ids")
    const ids = tokens as Array<unknown>
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i]
      const ok = typeof t === "number" && Number.isInteger(t) && t >= 0 && (vocabSize === undefined ? t <= 0xffffffff : t < vocabSize)
      if (!ok) fail(`${at()}.tokens[${i}]`, `must be a token id from 0 to ${vocabSize === undefined ? "the vocabulary's last" : vocabSize - 1}, got ${shown(t)}`)
    }
  }
  if (samples !== undefined) {
    if (typeof samples !== "number" || !Number.isInteger(samples) || samples < 0) {
      fail(`${at()}.samples`, `must be a non-negative integer, got ${shown(samples)}`)
    }
    if ((samples as number) > MAX_REQUEST_SAMPLES) {
      fail(`${at()}.samples`, `asks for ${samples as number} samples; a request may ask for at most ${MAX_REQUEST_SAMPLES.toLocaleString("en-US")}`)
    }
  }
  if (firstSample !== undefined) checkFirstSample(firstSample, (samples as number | undefined) ?? 0, at)
  if (sampling !== undefined) checkNodeSampling(sampling, at, vocabSize)
  if (children !== undefined && !Array.isArray(children)) fail(`${at()}.children`, "must be an array of nodes")
  return {
    ...(text !== undefined ? { text: text as string } : {}),
    ...(tokens !== undefined ? { tokens: tokens as Array<number> } : {}),
    ...(samples !== undefined ? { samples: samples as number } : {}),
    ...(firstSample !== undefined ? { firstSample: firstSample as number } : {}),
    ...(sampling !== undefined ? { sampling: sampling as Partial<SamplingOptions> } : {}),
    ...(children !== undefined ? { children: children as Array<unknown> } : {})
  }
}

/** Sample numbers are 32-bit (they key the sampler's random streams). */
export const checkFirstSample = (firstSample: unknown, samples: number, at: () => string): void => {
  const ok = typeof firstSample === "number" && Number.isInteger(firstSample) && firstSample >= 0 && firstSample + samples <= 0x100000000
  if (!ok) fail(`${at()}.firstSample`, `must be an integer ≥ 0 with firstSample + samples ≤ 2³², got ${shown(firstSample)}`)
}

/** A node's sampling overrides, with errors spelled as prompt-tree errors at the node's path. */
export const checkNodeSampling = (sampling: unknown, at: () => string, vocabSize: number | undefined): void => {
  try {
    checkSamplingOverrides(sampling, `${at()}.sampling.`, vocabSize)
  } catch (e) {
    const field = (e as { field?: string }).field
    fail(field ?? `${at()}.sampling`, (e as { problem?: string }).problem ?? String(e))
  }
}

/** The deepest a prompt tree may nest (a chain of nodes this long is already far past any model's context). */
export const MAX_TREE_DEPTH = 10_000

/** Where a node sits, as parent links: paths are spelled out only when needed, so a deep tree costs no more than its size. */
export interface Place {
  readonly parent: Place | undefined
  /** child index within the parent (0 for the root) */
  readonly index: number
  readonly depth: number
}

/** child indices from the root to the node */
export const pathOf = (place: Place): Array<number> => {
  const out: Array<number> = []
  for (let p: Place | undefined = place; p?.parent !== undefined; p = p.parent) out.push(p.index)
  return out.reverse()
}

/** the node's JSON path, `$.children[0].children[2]` */
export const jsonPathOf = (place: Place): string => `$${pathOf(place).map((i) => `.children[${i}]`).join("")}`

/** A node at MAX_TREE_DEPTH or deeper is refused, whoever built the tree. */
export const checkDepth = (place: Place): void => {
  if (place.depth >= MAX_TREE_DEPTH) fail(jsonPathOf(place), `nests deeper than ${MAX_TREE_DEPTH.toLocaleString("en-US")} levels, the most a prompt tree may`)
}

/** The running total of a tree's samples with this node's added; refused past MAX_REQUEST_SAMPLES. */
export const addSamples = (place: Place, total: number, samples: number): number => {
  if (!Number.isInteger(samples) || samples < 0) fail(`${jsonPathOf(place)}.samples`, `must be a non-negative integer, got ${shown(samples)}`)
  if (total + samples > MAX_REQUEST_SAMPLES) {
    fail(jsonPathOf(place), `the tree asks for more than ${MAX_REQUEST_SAMPLES.toLocaleString("en-US")} samples in all, the most one request may ask for`)
  }
  return total + samples
}

/**
 * Validates parsed JSON as a prompt tree; throws InvalidPromptTree naming the
 * bad field. Without `vocabSize` token ids are checked for shape only (the
 * engine checks them against its model's vocabulary again), so a command line
 * can validate a tree before it loads the model.
 */
export const parsePromptTree = (input: unknown, vocabSize?: number): PromptTree => {
  interface Pending { readonly input: unknown; readonly place: Place; readonly attach: (node: PromptTree) => void }
  let root: PromptTree | undefined
  let total = 0
  const stack: Array<Pending> = [{ input, place: { parent: undefined, index: 0, depth: 0 }, attach: (node) => (root = node) }]
  while (stack.length > 0) {
    const { input: raw, place, attach } = stack.pop()!
    checkDepth(place)
    const { children: rawChildren, ...own } = parseNode(raw, () => jsonPathOf(place), vocabSize)
    total = addSamples(place, total, own.samples ?? 0)
    const children: Array<PromptTree> = []
    attach(rawChildren === undefined ? own : { ...own, children })
    // Pushed in reverse so nodes are checked in document order: the first bad field is the one reported.
    for (let i = (rawChildren?.length ?? 0) - 1; i >= 0; i--) {
      stack.push({ input: rawChildren![i], place: { parent: place, index: i, depth: place.depth + 1 }, attach: (node) => (children[i] = node) })
    }
  }
  if (total === 0) fail("$", `asks for no samples: give some node "samples": N`)
  return root!
}

/** A node met on a walk, with where it sits. */
export interface WalkedNode extends Place {
  readonly node: PromptTree
  readonly parent: WalkedNode | undefined
}

/** Every node in depth-first document order, parents before children. */
export const walkPromptTree = function*(tree: PromptTree): Generator<WalkedNode> {
  const stack: Array<WalkedNode> = [{ node: tree, parent: undefined, index: 0, depth: 0 }]
  while (stack.length > 0) {
    const item = stack.pop()!
    yield item
    const children = item.node.children ?? []
    for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i]!, parent: item, index: i, depth: item.depth + 1 })
  }
}

export const countSamples = (tree: PromptTree): number => {
  let n = 0
  for (const { node } of walkPromptTree(tree)) n += node.samples ?? 0
  return n
}

/** Every node that asks for samples, with its path of child indices. */
export const sampleLeaves = (tree: PromptTree): Array<PromptLeaf> => {
  const out: Array<PromptLeaf> = []
  for (const w of walkPromptTree(tree)) if ((w.node.samples ?? 0) > 0) out.push({ path: pathOf(w), samples: w.node.samples! })
  return out
}
