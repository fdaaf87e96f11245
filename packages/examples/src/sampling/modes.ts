/**
 * The three ways `--compare` decodes the same tree: Hydragen attention over
 * the whole prefix tree, per-sequence paged attention (the baseline) over the
 * same cache, and Hydragen where only a problem's own samples share KV (the
 * few-shot prefix is held and prefilled once per problem, as a runtime with
 * single-prompt prefix sharing would).
 */
import type { AttentionMode, SharingMode } from "@canopy/runtime"
import { MODE_NAMES } from "../pipeline/report.ts"

export interface DecodeMode {
  readonly name: string
  readonly attention: AttentionMode
  readonly sharing: SharingMode
}

export const TREE_MODE: DecodeMode = { name: MODE_NAMES.tree, attention: "hydragen", sharing: "tree" }
export const BASELINE_MODE: DecodeMode = { name: MODE_NAMES.baseline, attention: "baseline", sharing: "tree" }
export const SINGLE_LEVEL_MODE: DecodeMode = { name: MODE_NAMES.singleLevel, attention: "hydragen", sharing: "single-level" }

export const COMPARED_MODES: ReadonlyArray<DecodeMode> = [TREE_MODE, BASELINE_MODE, SINGLE_LEVEL_MODE]
