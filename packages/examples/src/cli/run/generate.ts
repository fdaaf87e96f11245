/**
 * What `canopy generate` runs (the command and its help are in ../generate.ts).
 */
import { type Completion, countSamples, Engine, type GenerateStats, parsePromptTree, type PromptTree } from "@canopy/runtime"
import { readFile } from "node:fs/promises"
import { Console, Effect, Exit, Layer, Option, Stream } from "effect"
import { createProgress, tokensPerSecond } from "../../pipeline/progress.ts"
import { checkModelSpec } from "../../sampling/modelSource.ts"
import { modelStack } from "../../sampling/stack.ts"
import { causeText, InputFileError } from "../errors.ts"
import type { GenerateFlags } from "../generate.ts"
import { engineOptionsOf } from "./engineOptions.ts"

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

/** The summary's tokens/s, and the progress display's closing one: generated tokens over the run's wall time. */
const runFigures = (s: GenerateStats) => ({ tokens: s.generatedTokens, seconds: s.totalSeconds })

const generate = (flags: GenerateFlags, tree: PromptTree) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const request = {
      tree,
      attention: flags.attention,
      sharing: flags.sharing,
      scheduling: flags.scheduler,
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
            case "Logits":
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

export const run = (flags: GenerateFlags) =>
  Effect.gen(function*() {
    // Every input is checked before the GPU, the model and the engine are acquired (minutes and gigabytes for a real model).
    const tree = yield* readTree(flags.tree)
    const dtype = Option.getOrUndefined(flags.dtype)
    yield* checkModelSpec(flags.model, dtype)
    yield* generate(flags, tree).pipe(
      Effect.provide(Engine.layer(engineOptionsOf(flags)).pipe(Layer.provideMerge(modelStack(flags.model, 0, dtype))))
    )
  })
