/**
 * Runs a prompt tree on the Engine service. Completions come back grouped by
 * the node that asked for them; the engine's cache outlives the run, so a
 * later run whose prompts share a prefix with this one skips that prefill.
 */
import {
  type AttentionMode, type Completion, Engine, type EngineError, type GenerateStats, type SamplingOptions, type SharingMode,
  type StepProgress
} from "../index.ts"
import { Effect } from "effect"
import type { PromptNode } from "./PromptNode.ts"
import { pathKey, planRequests } from "./requests.ts"

export interface RunEvents {
  readonly onStep?: (progress: StepProgress) => void
  readonly onToken?: (node: PromptNode, sample: number, token: number) => void
  readonly onCompletion?: (node: PromptNode, completion: Completion) => void
}

export interface RunOptions {
  /** Settings for every node that does not set its own. */
  readonly sampling?: Partial<SamplingOptions>
  readonly attention?: AttentionMode
  readonly sharing?: SharingMode
  readonly events?: RunEvents
}

/** Totals over the run's engine requests (one per distinct sampling setting); rates over the summed times. */
export interface RunStats extends Pick<GenerateStats,
  | "samples" | "generatedTokens" | "promptTokens" | "prefillTokens" | "reusedTokens"
  | "prefillSeconds" | "decodeSeconds" | "totalSeconds" | "tokensPerSecond" | "decodeTokensPerSecond"
> {
  readonly requests: number
}

export interface PromptRun {
  /** The completions a node asked for, by sample index (empty for a node that asked for none). */
  completions(node: PromptNode): ReadonlyArray<Completion>
  /** The nodes that asked for samples, depth first. */
  readonly nodes: ReadonlyArray<PromptNode>
  readonly stats: RunStats
  /** The engine's figures for each request. */
  readonly requests: ReadonlyArray<GenerateStats>
}

const sum = (stats: ReadonlyArray<GenerateStats>, pick: (s: GenerateStats) => number): number =>
  stats.reduce((n, s) => n + pick(s), 0)

export const totals = (stats: ReadonlyArray<GenerateStats>): RunStats => {
  const generatedTokens = sum(stats, (s) => s.generatedTokens)
  const totalSeconds = sum(stats, (s) => s.totalSeconds)
  const decodeSeconds = sum(stats, (s) => s.decodeSeconds)
  return {
    requests: stats.length,
    samples: sum(stats, (s) => s.samples),
    generatedTokens,
    promptTokens: sum(stats, (s) => s.promptTokens),
    prefillTokens: sum(stats, (s) => s.prefillTokens),
    reusedTokens: sum(stats, (s) => s.reusedTokens),
    prefillSeconds: sum(stats, (s) => s.prefillSeconds),
    decodeSeconds,
    totalSeconds,
    tokensPerSecond: totalSeconds > 0 ? generatedTokens / totalSeconds : 0,
    decodeTokensPerSecond: decodeSeconds > 0 ? generatedTokens / decodeSeconds : 0
  }
}

/** Runs the whole tree `node` belongs to. */
export const run = (node: PromptNode, options: RunOptions = {}): Effect.Effect<PromptRun, EngineError, Engine> =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const root = node.root
    const byNode = new Map<PromptNode, Array<Completion>>()
    const requests: Array<GenerateStats> = []
    const events = options.events ?? {}
    for (const request of planRequests(root, options.sampling)) {
      const nodeAt = (path: ReadonlyArray<number>): PromptNode => request.nodes.get(pathKey(path))!
      const result = yield* engine.generate(
        {
          tree: request.tree,
          sampling: request.sampling,
          ...(options.attention !== undefined ? { attention: options.attention } : {}),
          ...(options.sharing !== undefined ? { sharing: options.sharing } : {})
        },
        {
          ...(events.onStep !== undefined ? { onStep: events.onStep } : {}),
          ...(events.onToken !== undefined ? { onToken: (e) => events.onToken?.(nodeAt(e.path), e.sample, e.token) } : {}),
          ...(events.onCompletion !== undefined ? { onCompletion: (c) => events.onCompletion?.(nodeAt(c.path), c) } : {})
        }
      )
      for (const completion of result.completions) {
        const owner = nodeAt(completion.path)
        const list = byNode.get(owner) ?? []
        list.push(completion)
        byNode.set(owner, list)
      }
      requests.push(result.stats)
    }
    for (const list of byNode.values()) list.sort((a, b) => a.sample - b.sample)
    const nodes = [...root.walk()].filter((n) => byNode.has(n))
    return {
      completions: (n: PromptNode) => byNode.get(n) ?? [],
      nodes,
      stats: totals(requests),
      requests
    }
  })
