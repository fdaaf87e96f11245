/**
 * Prompts tokenized the way the model expects: along a node's path, each run
 * of text pieces is joined and tokenized as one string (the root's with the
 * BOS), token pieces kept as given. The tokenizer is SentencePiece-style, so
 * tokenizing the pieces one by one would give other tokens. Checked on the
 * engine's tree tokenization (exact token arrays), end to end (greedy
 * completions of a tree against one flat prompt of the joined text and the
 * float64 CPU reference), in what the trie shares, and through the
 * prompt-tree library.
 */
import { type GpuHandle, openGpu } from "@canopy/kernels"
import { Effect, Layer } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Engine, type EngineService } from "../src/Engine.ts"
import { TreeEngine } from "../src/engine/Engine.ts"
import { InvalidPromptTree, type PromptTree } from "../src/engine/PromptTree.ts"
import { DEFAULT_SAMPLING, type GenerateRequest } from "../src/engine/request.ts"
import { resolveSampling } from "../src/engine/sampling.ts"
import { tokenizeTree } from "../src/engine/tokenize.ts"
import { Gpu } from "../src/Gpu.ts"
import { Model } from "../src/Model.ts"
import type { ModelConfig } from "../src/model/config.ts"
import type { LoadedModel } from "../src/model/model.ts"
import { referenceLogits } from "../src/model/reference.ts"
import { synthesizeHostWeights, uploadWeights } from "../src/model/weights.ts"
import { prompt, type PromptNode } from "../src/prompt/PromptNode.ts"
import { run, type RunOptions } from "../src/prompt/run.ts"
import { metaspaceBpe, metaspaceId as id } from "./metaspaceBpe.ts"

const tokenizer = metaspaceBpe()
const BOS = tokenizer.bosId!
const encode = (text: string, atRoot = true): Array<number> => tokenizer.encode(text, { addBos: atRoot })

const config: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 16,
  rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: { type: "none" }, vocabSize: tokenizer.vocabSize, tieWordEmbeddings: false,
  attentionBias: false, maxPositionEmbeddings: 4096, bosTokenId: BOS, eosTokenIds: tokenizer.eosIds
}
const host = synthesizeHostWeights(config, 11)

let gpu: GpuHandle
let model: LoadedModel
beforeAll(async () => {
  gpu = await openGpu()
  model = { config, weights: uploadWeights(gpu.device, config, host), tokenizer }
})
afterAll(() => {
  model?.weights.destroy()
  gpu?.close()
})

/** A node that asks for samples, with the nodes on its path, root first. */
interface Sampled {
  readonly path: ReadonlyArray<number>
  readonly nodes: ReadonlyArray<PromptTree>
  readonly samples: number
}

/** Every node that asks for samples, in document order (parents before children). */
const sampledNodes = (tree: PromptTree, path: ReadonlyArray<number> = [], above: ReadonlyArray<PromptTree> = []): Array<Sampled> => {
  const nodes = [...above, tree]
  const own = (tree.samples ?? 0) > 0 ? [{ path, nodes, samples: tree.samples! }] : []
  return [...own, ...(tree.children ?? []).flatMap((child, i) => sampledNodes(child, [...path, i], nodes))]
}

/** The rule, spelt out: consecutive text pieces are one string, tokenized once; the root's string gets the BOS. */
const wholePrompt = (nodes: ReadonlyArray<PromptTree>): Array<number> => {
  const runs: Array<{ text: string; readonly atRoot: boolean } | { readonly tokens: ReadonlyArray<number> }> = []
  nodes.forEach((node, depth) => {
    const last = runs.at(-1)
    if (node.tokens !== undefined) runs.push({ tokens: node.tokens })
    else if (last !== undefined && "text" in last) last.text += node.text ?? ""
    else runs.push({ text: node.text ?? "", atRoot: depth === 0 })
  })
  return runs.flatMap((r) => ("tokens" in r ? [...r.tokens] : encode(r.text, r.atRoot)))
}

/** What tokenizing each piece on its own would give. */
const piecewisePrompt = (nodes: ReadonlyArray<PromptTree>): Array<number> =>
  nodes.flatMap((node, depth) => (node.tokens !== undefined ? [...node.tokens] : encode(node.text ?? "", depth === 0)))

const same = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean => a.length === b.length && a.every((t, i) => t === b[i])

/** Tokens a trie of these prompts holds: each distinct prefix once. */
const distinctPrefixes = (prompts: ReadonlyArray<ReadonlyArray<number>>): number =>
  new Set(prompts.flatMap((p) => p.map((_, i) => p.slice(0, i + 1).join(",")))).size

/** Pieces that merge across their ends: words, word parts, spaces, a character outside the vocabulary. */
const WORDS = ["Once", " upon", " a", " time", "Once up", "on", "up", " ", "a", "ti", "me", "x", ""]
const textPiece = fc.array(fc.constantFrom(...WORDS), { maxLength: 3 }).map((words): PromptTree => ({ text: words.join("") }))
const tokenPiece = fc.array(fc.integer({ min: 0, max: tokenizer.vocabSize - 1 }), { maxLength: 3 }).map((tokens): PromptTree => ({ tokens }))

/** Trees at most `depth` levels below the root, each branch ending in a node that asks for samples. */
const treeArbitrary = (depth: number, piece: fc.Arbitrary<PromptTree>): fc.Arbitrary<PromptTree> => {
  const leaf = fc.tuple(piece, fc.integer({ min: 1, max: 2 })).map(([p, samples]): PromptTree => ({ ...p, samples }))
  if (depth === 0) return leaf
  const inner = fc
    .tuple(piece, fc.constantFrom(0, 0, 1, 2), fc.array(treeArbitrary(depth - 1, piece), { minLength: 1, maxLength: 3 }))
    .map(([p, samples, children]): PromptTree => ({ ...p, ...(samples > 0 ? { samples } : {}), children }))
  return fc.oneof({ weight: 1, arbitrary: leaf }, { weight: 3, arbitrary: inner })
}

const promptsOf = (tree: PromptTree) => tokenizeTree(model, tree, DEFAULT_SAMPLING).map((g) => ({ path: g.path, prompt: g.prompt }))

describe("the SentencePiece-style fixture", () => {
  it("tokenizes joined text otherwise than its pieces one by one", () => {
    expect(encode("Once upon a time")).toEqual([BOS, id("▁Once"), id("▁upon▁a"), id("▁time")])
    expect([...encode("Once upon"), ...encode(" a time", false)]).toEqual([BOS, id("▁Once"), id("▁upon"), id("▁a"), id("▁time")])
    // a piece that starts inside a word gets a "▁" of its own
    expect([...encode("Once up"), ...encode("on a time", false)]).toEqual([BOS, id("▁Once"), id("▁"), id("up"), id("▁on"), id("▁a"), id("▁time")])
    expect(tokenizer.decode(encode("Once upon a time"))).toBe("Once upon a time")
  })
})

describe("tokenizeTree", () => {
  it("tokenizes each run of text pieces whole, on hand-picked trees", () => {
    const onceUponATime = encode("Once upon a time")
    expect(promptsOf({ text: "Once upon", children: [{ text: " a time", samples: 1 }] })).toEqual([{ path: [0], prompt: onceUponATime }])
    expect(promptsOf({ text: "Once up", children: [{ text: "on a time", samples: 2 }] })).toEqual([{ path: [0], prompt: onceUponATime }])
    // empty pieces join like any other
    expect(promptsOf({ text: "", children: [{ text: "Once upon", children: [{ text: "", children: [{ text: " a time", samples: 1 }] }] }] }))
      .toEqual([{ path: [0, 0, 0], prompt: onceUponATime }])
    // inner nodes ask for their own prompts, each whole
    expect(promptsOf({ text: "Once", samples: 1, children: [{ text: " upon", samples: 1, children: [{ text: " a", samples: 1 }] }] })).toEqual([
      { path: [], prompt: encode("Once") },
      { path: [0], prompt: encode("Once upon") },
      { path: [0, 0], prompt: [BOS, id("▁Once"), id("▁upon▁a")] }
    ])
  })

  it("ends a text run at a token piece, and gives the BOS only to a text run at the root", () => {
    const split = { text: "Once upon", children: [{ tokens: [id("▁a")], children: [{ text: " time", samples: 1 }] }] }
    expect(promptsOf(split)).toEqual([{ path: [0, 0], prompt: [BOS, id("▁Once"), id("▁upon"), id("▁a"), id("▁time")] }])
    const tokenRoot = { tokens: [BOS], children: [{ text: "Once upon", children: [{ text: " a time", samples: 1 }] }] }
    expect(promptsOf(tokenRoot)).toEqual([{ path: [0, 0], prompt: [BOS, id("▁Once"), id("▁upon▁a"), id("▁time")] }])
    expect(promptsOf({ tokens: [], children: [{ text: "a", samples: 1 }] })).toEqual([{ path: [0], prompt: [id("▁a")] }])
    expect(() => promptsOf({ tokens: [], children: [{ text: "", samples: 1 }] })).toThrow(InvalidPromptTree)
  })

  it("gives every sampled node the whole tokenization of its path, on random trees of text and token pieces", () => {
    let differing = 0
    fc.assert(
      fc.property(treeArbitrary(3, fc.oneof({ weight: 3, arbitrary: textPiece }, { weight: 1, arbitrary: tokenPiece })), (tree) => {
        const want = sampledNodes(tree)
        if (want.some((w) => wholePrompt(w.nodes).length === 0)) {
          expect(() => promptsOf(tree)).toThrow(InvalidPromptTree)
          return
        }
        const groups = tokenizeTree(model, tree, DEFAULT_SAMPLING)
        expect(groups.map((g) => ({ path: g.path, prompt: g.prompt, samples: g.samples })))
          .toEqual(want.map((w) => ({ path: w.path, prompt: wholePrompt(w.nodes), samples: w.samples })))
        if (want.some((w) => !same(wholePrompt(w.nodes), piecewisePrompt(w.nodes)))) differing++
      }),
      { numRuns: 300 }
    )
    // the fixture makes the rule matter: many trees tokenize otherwise piece by piece
    expect(differing).toBeGreaterThan(50)
  })
})

const GREEDY = { temperature: 0, maxTokens: 3, ignoreEos: true } as const

/** Greedy tokens by the CPU reference, and how many of them are certain: f32 may pick either of two logits that nearly tie. */
const referenceGreedy = (prompt: ReadonlyArray<number>, steps: number) => {
  const tokens = [...prompt]
  const out: Array<number> = []
  let certain = 0
  for (let i = 0; i < steps; i++) {
    const logits = referenceLogits(config, host, tokens).at(-1)!
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b)
    out.push(order[0]!)
    tokens.push(order[0]!)
    if (logits[order[0]!]! - logits[order[1]!]! < 1e-3 * Math.max(1, Math.abs(logits[order[0]!]!))) break
    certain++
  }
  return { tokens: out, certain }
}

const key = (path: ReadonlyArray<number>, sample?: number): string => `${path.join(".")}${sample === undefined ? "" : `#${sample}`}`

/**
 * Runs a text-only tree greedily on a fresh engine: every sample starts
 * decoding after its whole prompt, decodes as one flat prompt of its joined
 * text and as the CPU reference do, and the trie prefills each distinct
 * prefix of the whole prompts once. Returns the request's statistics.
 */
const expectWholeEndToEnd = async (tree: PromptTree) => {
  const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 512, maxBatch: 64, kvDtype: "f32" })
  try {
    const firstPosition = new Map<string, number>()
    const result = await engine.generate({ tree, sampling: GREEDY }, {
      onLogits: ({ rows }) => {
        for (const r of rows) if (!firstPosition.has(key(r.path, r.sample))) firstPosition.set(key(r.path, r.sample), r.position)
      }
    })
    const want = sampledNodes(tree)
    const prompts = want.map((w) => wholePrompt(w.nodes))
    expect(result.stats.prefillTokens).toBe(distinctPrefixes(prompts))
    expect(result.stats.reusedTokens).toBe(prompts.reduce((n, p) => n + p.length, 0) - distinctPrefixes(prompts))
    for (const [i, w] of want.entries()) {
      const mine = result.completions.filter((c) => key(c.path) === key(w.path))
      expect(mine).toHaveLength(w.samples)
      const flat = await engine.generate({ tree: { text: w.nodes.map((n) => n.text).join(""), samples: 1 }, sampling: GREEDY })
      const flatTokens = flat.completions[0]!.tokens
      const reference = referenceGreedy(prompts[i]!, GREEDY.maxTokens)
      expect(flatTokens.slice(0, reference.certain)).toEqual(reference.tokens.slice(0, reference.certain))
      for (const c of mine) {
        expect(firstPosition.get(key(c.path, c.sample)), key(c.path, c.sample)).toBe(prompts[i]!.length - 1)
        expect(c.tokens).toHaveLength(GREEDY.maxTokens)
        if (reference.certain === GREEDY.maxTokens) expect(c.tokens).toEqual(flatTokens)
        else expect(c.tokens.slice(0, reference.certain)).toEqual(flatTokens.slice(0, reference.certain))
      }
    }
    expect(engine.kv.tree.stats().liveSequences).toBe(0)
    return result.stats
  } finally {
    engine.destroy()
  }
}

describe("TreeEngine.generate with text pieces", () => {
  it("decodes a tree of pieces as the whole prompts, and the trie shares what the whole tokenizations share", async () => {
    const tree = {
      text: "Once upon",
      children: [
        { text: " a time", samples: 2 }, // ▁Once ▁upon▁a ▁time
        { text: " time", samples: 1 }, //   ▁Once ▁upon ▁time: shares <s> ▁Once with the first
        { text: " a", samples: 1, children: [{ text: " time", samples: 1 }] } // ▁Once ▁upon▁a, then the first's prompt again
      ]
    }
    const stats = await expectWholeEndToEnd(tree)
    // the trie holds <s> ▁Once, then ▁upon▁a ▁time and ▁upon ▁time: 6 tokens of the 15 the prompts count
    expect([stats.prefillTokens, stats.reusedTokens]).toEqual([6, 9])
    expect(stats.promptTokens).toBe(4 * 2 + 4 + 3 + 4)
    await expectWholeEndToEnd({ text: "Once up", children: [{ text: "on a time", samples: 1 }, { text: "on", samples: 1 }] })
  })

  it("does so on random trees of text pieces", async () => {
    await fc.assert(fc.asyncProperty(treeArbitrary(2, textPiece), async (tree) => void (await expectWholeEndToEnd(tree))), { numRuns: 6 })
  })
})

/** The library's run on a fresh engine over the fixture, the requests it made of the engine, and what `after` runs on that engine. */
const runOnEngine = <A>(root: PromptNode, options: RunOptions, after: (engine: EngineService) => Effect.Effect<A, unknown>) => {
  const calls: Array<GenerateRequest> = []
  const counting = Layer.effect(
    Engine,
    Effect.gen(function*() {
      const inner = yield* Engine
      const generate: EngineService["generate"] = (request, events) =>
        Effect.suspend(() => {
          calls.push(request)
          return inner.generate(request, events)
        })
      return Engine.of({ ...inner, generate })
    })
  ).pipe(
    Layer.provide(Engine.layer({ blockSize: 4, kvBlocks: 512, kvDtype: "f32" })),
    Layer.provide(Layer.succeed(Model, Model.of({ ...model, source: { kind: "synthetic", model: config, seed: 11 } }))),
    Layer.provide(Layer.succeed(Gpu, Gpu.of(gpu)))
  )
  return Effect.runPromise(
    Effect.gen(function*() {
      const result = yield* run(root, options)
      const requests = [...calls]
      return { result, requests, after: yield* after(yield* Engine) }
    }).pipe(Effect.provide(counting))
  )
}

describe("the prompt-tree library", () => {
  it("sends text pieces as text, every node in one request whatever its settings, and each node decodes its whole prompt", async () => {
    const root = prompt("Once upon")
    const a = root.child(" a time").sample(2, { maxTokens: 2 })
    const deeper = a.child(" a").sample(1) // under a node with settings of its own: the run's settings, not a's
    const b = root.child({ tokens: [id("▁a")] }).child(" time").sample(1, { maxTokens: 1, seed: 5 })
    const flatOf = (text: string, maxTokens: number) => ({ tree: { text, samples: 1 }, sampling: { ...GREEDY, maxTokens } })
    const { result, requests, after: flats } = await runOnEngine(root, { sampling: GREEDY }, (engine) =>
      Effect.all([engine.generate(flatOf("Once upon a time", 2)), engine.generate(flatOf("Once upon a time a", 3))]))
    expect(requests).toHaveLength(1)
    const request = requests[0]!
    expect(request.tree).toEqual({
      text: "Once upon",
      children: [
        { text: " a time", children: [{ tokens: [], samples: 2, sampling: { maxTokens: 2 } }, { text: " a", samples: 1 }] },
        { tokens: [id("▁a")], children: [{ text: " time", samples: 1, sampling: { maxTokens: 1, seed: 5 } }] }
      ]
    })
    const groups = tokenizeTree(model, request.tree, resolveSampling(request.sampling ?? {}, config.vocabSize))
    expect(groups.map((g) => [g.prompt, g.sampling.maxTokens])).toEqual([
      [encode("Once upon a time"), 2],
      [[BOS, id("▁Once"), id("▁upon▁a"), id("▁time"), id("▁a")], 3],
      [[BOS, id("▁Once"), id("▁upon"), id("▁a"), id("▁time")], 1]
    ])
    // a seed set on the node is used as given
    expect(groups[2]!.sampling.seed).toBe(5)
    expect(result.completions(a).map((c) => c.tokens)).toEqual([flats[0].completions[0]!.tokens, flats[0].completions[0]!.tokens])
    expect(result.completions(deeper).map((c) => c.tokens)).toEqual([flats[1].completions[0]!.tokens])
    expect(result.completions(b).map((c) => c.tokens.length)).toEqual([1])
    expect(result.stats.samples).toBe(4)
  })

  it("draws each node's samples as a request for that node alone, with its seed, draws them (a queue job's request)", async () => {
    const prefix = "Once upon"
    const problems = [[" a time", 11], [" time", 12], ["on a", 13]] as const
    const root = prompt(prefix)
    const nodes = problems.map(([text, seed]) => root.child(text).sample(3, { seed }))
    const sampling = { temperature: 0.9, maxTokens: 3, ignoreEos: true }
    const { result, requests, after: jobs } = await runOnEngine(root, { sampling }, (engine) =>
      Effect.forEach(problems, ([text, seed]) =>
        engine.generate({ tree: { text: prefix, children: [{ text, samples: 3, firstSample: 0, sampling: { seed } }] }, sampling })))
    expect(requests).toHaveLength(1)
    expect(requests[0]!.tree.children!.map((c) => c.sampling)).toEqual(problems.map(([, seed]) => ({ seed })))
    nodes.forEach((node, i) => expect(result.completions(node).map((c) => c.tokens)).toEqual(jobs[i]!.completions.map((c) => c.tokens)))
  })
})
