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
import { type Completion, countSamples, Engine, type GenerateStats, MAX_REQUEST_SAMPLES, MAX_TREE_DEPTH, parsePromptTree, type PromptTree, type SamplingOptions } from "@canopy/runtime"
import { readFile } from "node:fs/promises"
import { Console, Effect, Exit, Layer, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import { createProgress, tokensPerSecond } from "../pipeline/progress.ts"
import { modelStack } from "../sampling/stack.ts"
import { causeText, InputFileError } from "./errors.ts"
import { checkModelSpec, kvDtypeFlag, kvMemoryFlag, kvOptions, MAX_BATCH, modelFlag, positiveInt, samplingFlags, stopFlag } from "./flags.ts"

const completionJson = (c: Completion) => ({ path: c.path, sample: c.sample, tokens: c.tokens, text: c.text, finishReason: c.finishReason })

/**
 * Reads and checks the tree before the model loads: its structure only, since
 * token ids need the model's vocabulary (the engine checks those).
 */
const readTree = (path: string): Effect.Effect<PromptTree, unknown> =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (e) => new InputFileError({ flag: "tree", path, problem: `cannot read it: ${causeText(e)}` })
    })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new InputFileError({ flag: "tree", path, problem: `is not JSON: ${causeText(e)}` })
    })
    return yield* Effect.try({ try: () => parsePromptTree(json), catch: (e) => e })
  })

const SUMMARY = "Sample completions of a prompt tree (JSON file) with the engine"

/** The prompt-tree format, for `canopy generate --help`; the help indents only a description's first line, so the rest carry its indent. */
const TREE_FORMAT = [
  `${SUMMARY}.`,
  "",
  "The tree (--tree FILE) is one JSON object per node, with these keys, all optional:",
  `  "text": "..."        the node's piece of prompt, appended to its parent's prompt`,
  `  "tokens": [1, 2]     token ids instead of "text" (give one of the two)`,
  `  "samples": N         completions of the prompt that ends at this node (default 0)`,
  `  "children": [...]    nodes whose prompts continue this node's`,
  `Some node must ask for samples; at most ${MAX_REQUEST_SAMPLES.toLocaleString("en-US")} in all, nested at most ${MAX_TREE_DEPTH.toLocaleString("en-US")} deep.`,
  "Shared prefixes are prefilled and attended once. Two questions under one shared context:",
  `  {"text": "You answer in one word.\\n",`,
  `   "children": [{"text": "Q: the capital of France?\\nA:", "samples": 4},`,
  `                {"text": "Q: the largest planet?\\nA:", "samples": 2}]}`
].map((line, i) => (i === 0 || line === "" ? line : `  ${line}`)).join("\n")

/** The summary's tokens/s, and the progress display's closing one: generated tokens over the run's wall time. */
const runFigures = (s: GenerateStats) => ({ tokens: s.generatedTokens, seconds: s.totalSeconds })

export const generateCommand = Command.make(
  "generate",
  {
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
    ...samplingFlags,
    stop: stopFlag,
    batch: positiveInt("max-batch", 1024, "most samples decoding at once", MAX_BATCH),
    kvMemory: kvMemoryFlag,
    kvDtype: kvDtypeFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the result as JSON on standard output"), Flag.withDefault(false)),
    stream: Flag.Boolean("stream").pipe(
      Flag.withDescription("print each token, completion and the final stats as JSON lines on standard output, as they happen"),
      Flag.withDefault(false)
    )
  },
  (flags) =>
    Effect.gen(function*() {
      // Every input is checked before the GPU, the model and the engine are acquired (minutes and gigabytes for a real model).
      const tree = yield* readTree(flags.tree)
      yield* checkModelSpec(flags.model)
      yield* generate(flags, tree).pipe(
        Effect.provide(Engine.layer({ maxBatch: flags.batch, ...kvOptions(flags.kvMemory, flags.kvDtype) }).pipe(Layer.provideMerge(modelStack(flags.model))))
      )
    })
).pipe(Command.withDescription(TREE_FORMAT), Command.withShortDescription(SUMMARY))

interface GenerateFlags extends Pick<SamplingOptions, "temperature" | "topK" | "topP" | "seed" | "maxTokens" | "stop"> {
  readonly attention: "hydragen" | "baseline"
  readonly sharing: "tree" | "single-level"
  readonly json: boolean
  readonly stream: boolean
}

const generate = (flags: GenerateFlags, tree: PromptTree) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const request = {
      tree,
      attention: flags.attention,
      sharing: flags.sharing,
      sampling: {
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        seed: flags.seed,
        maxTokens: flags.maxTokens,
        stop: flags.stop
      }
    }
    if (flags.stream) {
      return yield* engine.stream(request).pipe(
        Stream.runForEach((e) => {
          switch (e._tag) {
            case "Token":
              return Console.log(JSON.stringify({ event: "token", path: e.path, sample: e.sample, token: e.token, text: e.text }))
            case "Completion":
              return Console.log(JSON.stringify({ event: "completion", ...completionJson(e.completion) }))
            case "Done":
              return Console.log(JSON.stringify({ event: "done", stats: e.result.stats }))
            case "Step":
              return Effect.void
          }
        })
      )
    }
    const progress = createProgress({ mode: flags.json ? "silent" : "auto" })
    let tokens = 0
    // Started as the request is made, so that its tokens/s is over the same time as the summary's.
    progress.start({ samples: countSamples(tree) })
    const result = yield* engine.generate(
      request,
      {
        onStep: (p) => {
          progress.tokens(p.generatedTokens - tokens)
          tokens = p.generatedTokens
        },
        onCompletion: (c) => {
          progress.sampleDone()
          if (!flags.json) progress.log(`[${c.path.join(".")}#${c.sample}] ${JSON.stringify(c.text)} (${c.tokens.length} tokens, ${c.finishReason})`)
        }
      }
    ).pipe(Effect.onExit((exit) => Effect.sync(() => progress.stop(Exit.isSuccess(exit) ? runFigures(exit.value.stats) : undefined))))
    if (flags.json) {
      return yield* Console.log(JSON.stringify({
        completions: result.completions.map(completionJson),
        stats: result.stats
      }))
    }
    const s = result.stats
    const figures = runFigures(s)
    yield* Console.log(
      `${s.samples} samples, ${s.generatedTokens} tokens in ${s.totalSeconds.toFixed(2)} s ` +
        `(${tokensPerSecond(figures.tokens, figures.seconds).toFixed(1)} tokens/s; prefill ${s.prefillSeconds.toFixed(2)} s of ${s.prefillTokens} tokens, ` +
        `decode ${s.decodeSeconds.toFixed(2)} s), peak ${s.peakBlocks} of ${s.blockCapacity} KV blocks, ` +
        `each cached KV token served ${s.sharingFactor.toFixed(1)} samples per step`
    )
  })
