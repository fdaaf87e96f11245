/**
 * The engine's input: a tree of prompt pieces. Each node is a text or a token
 * run appended to its parent's prompt; a node that asks for `samples` gets
 * that many completions of the prompt ending at it.
 *
 *   { "text": "few-shot…", "children": [ { "text": "problem 1", "samples": 4 }, … ] }
 */
import { Data } from "effect"

export interface PromptTree {
  readonly text?: string
  readonly tokens?: ReadonlyArray<number>
  readonly samples?: number
  readonly children?: ReadonlyArray<PromptTree>
}

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

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

/** Validates parsed JSON as a prompt tree; throws InvalidPromptTree naming the bad field. */
export const parsePromptTree = (input: unknown, vocabSize: number, where = "$"): PromptTree => {
  if (!isRecord(input)) throw new InvalidPromptTree({ path: where, problem: "must be an object" })
  const { text, tokens, samples, children } = input
  if (text !== undefined && tokens !== undefined) {
    throw new InvalidPromptTree({ path: where, problem: `has both "text" and "tokens"; give one` })
  }
  if (text !== undefined && typeof text !== "string") {
    throw new InvalidPromptTree({ path: `${where}.text`, problem: "must be a string" })
  }
  if (tokens !== undefined) {
    if (!Array.isArray(tokens)) throw new InvalidPromptTree({ path: `${where}.tokens`, problem: "must be an array of token ids" })
    tokens.forEach((t, i) => {
      if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= vocabSize) {
        throw new InvalidPromptTree({
          path: `${where}.tokens[${i}]`,
          problem: `must be a token id from 0 to ${vocabSize - 1}, got ${JSON.stringify(t)}`
        })
      }
    })
  }
  if (samples !== undefined && (typeof samples !== "number" || !Number.isInteger(samples) || samples < 0 || samples > 1_000_000)) {
    throw new InvalidPromptTree({ path: `${where}.samples`, problem: `must be a non-negative integer, got ${JSON.stringify(samples)}` })
  }
  if (children !== undefined && !Array.isArray(children)) {
    throw new InvalidPromptTree({ path: `${where}.children`, problem: "must be an array of nodes" })
  }
  const parsedChildren = (children as Array<unknown> | undefined)?.map((c, i) => parsePromptTree(c, vocabSize, `${where}.children[${i}]`))
  const node: PromptTree = {
    ...(text !== undefined ? { text: text as string } : {}),
    ...(tokens !== undefined ? { tokens: tokens as Array<number> } : {}),
    ...(samples !== undefined ? { samples: samples as number } : {}),
    ...(parsedChildren !== undefined ? { children: parsedChildren } : {})
  }
  if (where === "$" && countSamples(node) === 0) {
    throw new InvalidPromptTree({ path: where, problem: `asks for no samples: give some node "samples": N` })
  }
  return node
}

export const countSamples = (tree: PromptTree): number =>
  (tree.samples ?? 0) + (tree.children ?? []).reduce((n, c) => n + countSamples(c), 0)

/** Every node that asks for samples, with its path of child indices. */
export const sampleLeaves = (tree: PromptTree, path: ReadonlyArray<number> = []): Array<PromptLeaf> => [
  ...((tree.samples ?? 0) > 0 ? [{ path, samples: tree.samples! }] : []),
  ...(tree.children ?? []).flatMap((c, i) => sampleLeaves(c, [...path, i]))
]
