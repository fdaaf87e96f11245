/**
 * Runs a prompt tree on the Engine service, as one request whatever the
 * nodes' settings. Completions come back grouped by the node that asked for
 * them; the engine's cache outlives the run, so a later run whose prompts
 * share a prefix with this one skips that prefill.
 */
import {
  type AttentionMode, type Completion, Engine, type EngineError, type GenerateStats, type SamplingOptions, type SchedulingMode, type SharingMode,
  type StepProgress
} from "../index.ts"
import { Effect } from "effect"
import type { PromptNode } from "./PromptNode.ts"
import { pathKey, planRequest } from "./requests.ts"

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
  /** continuous (the engine's default) or waves, to compare against */
  readonly scheduling?: SchedulingMode
  readonly events?: RunEvents
}

/** The figures of the run's one engine request. */
export type RunStats = GenerateStats

export interface PromptRun {
  /** The completions a node asked for, by sample index (empty for a node that asked for none). */
  completions(node: PromptNode): ReadonlyArray<Completion>
  /** The nodes that asked for samples, depth first. */
  readonly nodes: ReadonlyArray<PromptNode>
  readonly stats: RunStats
}

/** Runs the whole tree `node` belongs to. */
export const run = (node: PromptNode, options: RunOptions = {}): Effect.Effect<PromptRun, EngineError, Engine> =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const root = node.root
    const request = planRequest(root, options.sampling)
    const nodeAt = (path: ReadonlyArray<number>): PromptNode => request.nodes.get(pathKey(path))!
    const events = options.events ?? {}
    const result = yield* engine.generate(
      {
        tree: request.tree,
        sampling: request.sampling,
        ...(options.attention !== undefined ? { attention: options.attention } : {}),
        ...(options.sharing !== undefined ? { sharing: options.sharing } : {}),
        ...(options.scheduling !== undefined ? { scheduling: options.scheduling } : {})
      },
      {
        ...(events.onStep !== undefined ? { onStep: events.onStep } : {}),
        ...(events.onToken !== undefined ? { onToken: (e) => events.onToken?.(nodeAt(e.path), e.sample, e.token) } : {}),
        ...(events.onCompletion !== undefined ? { onCompletion: (c) => events.onCompletion?.(nodeAt(c.path), c) } : {})
      }
    )
    const byNode = new Map<PromptNode, Array<Completion>>()
    for (const completion of result.completions) {
      const owner = nodeAt(completion.path)
      const list = byNode.get(owner) ?? []
      list.push(completion)
      byNode.set(owner, list)
    }
    for (const list of byNode.values()) list.sort((a, b) => a.sample - b.sample)
    const nodes = [...root.walk()].filter((n) => byNode.has(n))
    return { completions: (n: PromptNode) => byNode.get(n) ?? [], nodes, stats: result.stats }
  })
