/**
 * The prompt tree as a builder: each node appends a piece of prompt to its
 * parent's, and any node may ask for samples of the prompt that ends at it.
 *
 *   const root = prompt(fewShot)
 *   const p = root.child(problemText).sample(8, { maxTokens: 64 })
 *
 * Nodes are plain handles: a run's completions are looked up by them.
 */
import type { SamplingOptions } from "../index.ts"

/** Text (tokenized by the model) or token ids, appended to the parent's prompt. */
export type PromptPiece = string | { readonly tokens: ReadonlyArray<number> }

/** Sampling settings of one node; what is left out comes from the run, then the engine's defaults. */
export type NodeSampling = Partial<SamplingOptions>

export class PromptNode {
  private readonly kids: Array<PromptNode> = []
  private requested = 0
  private settings: NodeSampling = {}

  private constructor(readonly piece: PromptPiece, readonly parent: PromptNode | undefined) {}

  /** A root node: the start of a prompt tree. */
  static root(piece: PromptPiece): PromptNode {
    return new PromptNode(piece, undefined)
  }

  /** Adds a node whose prompt continues this one's. */
  child(piece: PromptPiece): PromptNode {
    const node = new PromptNode(piece, this)
    this.kids.push(node)
    return node
  }

  /** Asks for `n` completions of the prompt ending here (0 withdraws the request); returns the node. */
  sample(n: number, sampling: NodeSampling = {}): this {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`sample count must be an integer ≥ 0, got ${n}`)
    this.requested = n
    this.settings = sampling
    return this
  }

  get children(): ReadonlyArray<PromptNode> {
    return this.kids
  }

  get samples(): number {
    return this.requested
  }

  get sampling(): NodeSampling {
    return this.settings
  }

  get root(): PromptNode {
    return this.parent === undefined ? this : this.parent.root
  }

  /** Every node of the subtree, this one first, depth first. */
  *walk(): Generator<PromptNode> {
    yield this
    for (const kid of this.kids) yield* kid.walk()
  }
}

/** Starts a prompt tree. */
export const prompt = (piece: PromptPiece): PromptNode => PromptNode.root(piece)
