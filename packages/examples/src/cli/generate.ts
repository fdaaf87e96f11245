/**
 * `canopy generate`: completions of a prompt tree given as JSON
 * (`{"text": "...", "children": [{"text": "...", "samples": 4}, ...]}`; nodes
 * nest, `"tokens": [...]` may replace `"text"`). Completions stream to standard
 * error as they finish; with `--json` the result goes to standard output as
 * `{"completions": [{"path", "sample", "tokens", "text", "finishReason"}], "stats": {...}}`;
 * with `--stream`, one JSON line per event as it happens:
 * `{"event": "token", "path", "sample", "token"}`, `{"event": "completion", ...}`,
 * and last `{"event": "done", "stats": {...}}`.
 */
import { type Completion, Engine, Model, parsePromptTree } from "@canopy/runtime"
import { readFile } from "node:fs/promises"
import { Console, Effect, Layer, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import { createProgress } from "../pipeline/progress.ts"
import { modelStack } from "../sampling/stack.ts"
import { InvalidFlag } from "./errors.ts"
import { kvMemoryFlag, kvMemoryOption, modelFlag, positiveInt, samplingFlags } from "./flags.ts"

const completionJson = (c: Completion) => ({ path: c.path, sample: c.sample, tokens: c.tokens, text: c.text, finishReason: c.finishReason })

const readTree = (path: string) =>
  Effect.tryPromise({
    try: async () => JSON.parse(await readFile(path, "utf8")) as unknown,
    catch: (e) => new InvalidFlag(`--tree ${path}: ${e instanceof Error ? e.message : String(e)}`)
  })

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
    stop: Flag.String("stop").pipe(Flag.withDescription("stop string (repeat the flag for several)"), Flag.atLeast(0)),
    batch: positiveInt("max-batch", 1024, "most samples decoding at once"),
    kvMemory: kvMemoryFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the result as JSON on standard output"), Flag.withDefault(false)),
    stream: Flag.Boolean("stream").pipe(
      Flag.withDescription("print each token, completion and the final stats as JSON lines on standard output, as they happen"),
      Flag.withDefault(false)
    )
  },
  (flags) =>
    Effect.gen(function*() {
      const json = yield* readTree(flags.tree)
      const model = yield* Model
      const tree = yield* Effect.try({ try: () => parsePromptTree(json, model.config.vocabSize), catch: (e) => e })
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
                return Console.log(JSON.stringify({ event: "token", path: e.path, sample: e.sample, token: e.token }))
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
      const result = yield* engine.generate(
        request,
        {
          onStep: (p) => {
            if (p.step === 1) progress.start({ problems: 0, samples: p.totalSamples })
            progress.tokens(p.generatedTokens - tokens)
            tokens = p.generatedTokens
          },
          onCompletion: (c) => {
            progress.sampleDone()
            if (!flags.json) progress.log(`[${c.path.join(".")}#${c.sample}] ${JSON.stringify(c.text)} (${c.tokens.length} tokens, ${c.finishReason})`)
          }
        }
      ).pipe(Effect.ensuring(Effect.sync(() => progress.stop())))
      if (flags.json) {
        return yield* Console.log(JSON.stringify({
          completions: result.completions.map(completionJson),
          stats: result.stats
        }))
      }
      const s = result.stats
      yield* Console.log(
        `${s.samples} samples, ${s.generatedTokens} tokens in ${s.totalSeconds.toFixed(2)} s ` +
          `(${s.tokensPerSecond.toFixed(1)} tokens/s; prefill ${s.prefillSeconds.toFixed(2)} s of ${s.prefillTokens} tokens, ` +
          `decode ${s.decodeSeconds.toFixed(2)} s), peak ${s.peakBlocks} of ${s.blockCapacity} KV blocks, ` +
          `each cached KV token served ${s.sharingFactor.toFixed(1)} samples per step`
      )
    }).pipe(
      Effect.provide(Engine.layer({ maxBatch: flags.batch, ...kvMemoryOption(flags.kvMemory) }).pipe(Layer.provideMerge(modelStack(flags.model))))
    )
).pipe(Command.withDescription("Sample completions of a prompt tree (JSON file) with the engine"))
