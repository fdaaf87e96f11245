/**
 * `canopy generate`: completions of a prompt tree given as JSON
 * (`{"text": "...", "children": [{"text": "...", "samples": 4}, ...]}`; nodes
 * nest, `"tokens": [...]` may replace `"text"`). Completions stream to standard
 * error as they finish; with `--json` the result goes to standard output as
 * `{"completions": [{"path", "sample", "tokens", "text", "finishReason"}], "stats": {...}}`;
 * with `--stream`, one JSON line per event as it happens:
 * `{"event": "token", "path", "sample", "token", "text"}` (the text the token adds; "" while a UTF-8 character is incomplete), `{"event": "completion", ...}`,
 * and last `{"event": "done", "stats": {...}}`.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { MAX_REQUEST_SAMPLES, MAX_TREE_DEPTH } from "./bounds.ts"
import {
  kvDtypeFlag, kvMemoryFlag, MAX_BATCH, modelFlag, noOverlapFlag, noTuneFlag, positiveInt, samplingFlags, schedulerFlag, stopFlag, weightDtypeFlag
} from "./flags.ts"

const SUMMARY = "Sample completions of a prompt tree (JSON file) with the engine"

/** The prompt-tree format, for `canopy generate --help`; the help indents only a description's first line, so the rest carry its indent. */
const TREE_FORMAT = [
  `${SUMMARY}.`,
  "",
  "The tree (--tree FILE) is one JSON object per node, with these keys, all optional:",
  `  "text": "..."        the node's piece of prompt, appended to its parent's prompt`,
  `  "tokens": [1, 2]     token ids instead of "text" (give one of the two)`,
  `  "samples": N         completions of the prompt that ends at this node (default 0)`,
  `  "firstSample": K     the number of this node's first sample (default 0): K, K+1, …`,
  `  "sampling": {...}    settings for the samples at and below this node, over the flags':`,
  `                       temperature, topK, topP, seed, maxTokens, stop, stopTokenIds, ignoreEos`,
  `  "children": [...]    nodes whose prompts continue this node's`,
  `Some node must ask for samples; at most ${MAX_REQUEST_SAMPLES.toLocaleString("en-US")} in all, nested at most ${MAX_TREE_DEPTH.toLocaleString("en-US")} deep.`,
  "Shared prefixes are prefilled and attended once. Two questions under one shared context:",
  `  {"text": "You answer in one word.\\n",`,
  `   "children": [{"text": "Q: the capital of France?\\nA:", "samples": 4},`,
  `                {"text": "Q: the largest planet?\\nA:", "samples": 2}]}`
].map((line, i) => (i === 0 || line === "" ? line : `  ${line}`)).join("\n")

const flags = {
  model: modelFlag,
  tree: Flag.String("tree").pipe(Flag.withDescription("the prompt tree, a JSON file")),
  attention: Flag.Literals("attention", ["hydragen", "baseline"]).pipe(
    Flag.withDescription("hydragen: shared prefixes attended once per level; baseline: per-sequence paged decoding"),
    Flag.withDefault("hydragen")
  ),
  sharing: Flag.Literals("sharing", ["tree", "single-level"]).pipe(
    Flag.withDescription("tree: every shared node once; single-level: each leaf's whole prompt as one prefix"),
    Flag.withDefault("tree")
  ),
  scheduler: schedulerFlag,
  ...samplingFlags,
  stop: stopFlag,
  batch: positiveInt("max-batch", 1024, "most samples decoding at once", MAX_BATCH),
  kvMemory: kvMemoryFlag,
  kvDtype: kvDtypeFlag,
  noTune: noTuneFlag,
  noOverlap: noOverlapFlag,
  dtype: weightDtypeFlag,
  json: Flag.Boolean("json").pipe(Flag.withDescription("print the result as JSON on standard output"), Flag.withDefault(false)),
  stream: Flag.Boolean("stream").pipe(
    Flag.withDescription("print each token, completion and the final stats as JSON lines on standard output, as they happen"),
    Flag.withDefault(false)
  )
}

export type GenerateFlags = Command.Command.Config.Infer<typeof flags>

export const generateCommand = Command.make("generate", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/generate.ts")), (m) => m.run(input))
).pipe(Command.withDescription(TREE_FORMAT), Command.withShortDescription(SUMMARY))
