/**
 * Nothing wrong after a fault. A request stopped anywhere — an abort between
 * prefill chunks or decode steps, a consumer that throws from an event, an
 * Effect interrupt, a stream that stops being read — must leave a cache whose
 * every token has its KV written: the same follow-up request then gives the
 * same greedy tokens and logits on that engine as on a fresh one. Also the
 * engine's own bounds on hostile requests, each checked before any work.
 */
import { type GpuHandle, openGpu } from "@canopy/kernels"
import { Effect, Layer, Stream } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Engine } from "../src/Engine.ts"
import { type GenerateRequest, TreeEngine } from "../src/engine/Engine.ts"
import { ContextTooLong, InvalidEngineOptions, NonFiniteLogits } from "../src/engine/errors.ts"
import { InvalidPromptTree, MAX_REQUEST_SAMPLES, MAX_TREE_DEPTH, parsePromptTree, type PromptTree, sampleLeaves } from "../src/engine/PromptTree.ts"
import { Gpu } from "../src/Gpu.ts"
import { Model } from "../src/Model.ts"
import type { LoadedModel } from "../src/model/model.ts"
import { byteTokenizer } from "../src/model/tokenizer.ts"
import { synthesizeHostWeights, uploadWeights } from "../src/model/weights.ts"
import { SMALL_CONFIG, smallModel } from "./smallModel.ts"

const config = SMALL_CONFIG

let gpu: GpuHandle
let model: LoadedModel
/** the engine that sees the faults */
let engine: TreeEngine
/** the same, reading each decode step back before submitting the next (overlap off) */
let stepwise: TreeEngine
/** the fresh engine, one step at a time: its cache is cleared before every reference run */
let fresh: TreeEngine
beforeAll(async () => {
  gpu = await openGpu()
  model = smallModel(gpu.device, 5)
  // Small prefill chunks, so that prompts span several and an abort can land between them. f32 KV: the
  // comparison with a fresh engine is at 1e-5, and a key computed in another batch (an f32 ulp apart) may
  // round to the neighbouring f16; which tokens the cache keeps does not depend on the element type.
  const options = { blockSize: 4, kvBlocks: 512, maxPrefillRows: 8, kvDtype: "f32" } as const
  engine = await TreeEngine.create(gpu.device, model, options)
  stepwise = await TreeEngine.create(gpu.device, model, { ...options, overlap: false })
  fresh = await TreeEngine.create(gpu.device, model, { ...options, overlap: false })
})
afterAll(() => {
  engine?.destroy()
  stepwise?.destroy()
  fresh?.destroy()
  model?.weights.destroy()
  gpu?.close()
})

/** Greedy tokens and each step's logits of every sample of a request. */
const greedy = async (e: TreeEngine, request: GenerateRequest) => {
  const logits = new Map<string, Array<Float32Array>>()
  const result = await e.generate(request, {
    onLogits: ({ rows, logits: all }) => {
      rows.forEach((row, r) => {
        const key = `${row.path.join(".")}#${row.sample}`
        const list = logits.get(key) ?? []
        list.push(all.slice(r * config.vocabSize, (r + 1) * config.vocabSize))
        logits.set(key, list)
      })
    }
  })
  return { completions: result.completions, logits, stats: result.stats }
}

/** The top two logits are within `gap` of each other: f32 rounding may pick either. */
const nearTie = (row: Float32Array, gap = 1e-4): boolean => {
  const sorted = Array.from(row).sort((a, b) => b - a)
  return sorted[0]! - sorted[1]! < gap * Math.max(1, Math.abs(sorted[0]!))
}

/**
 * The follow-up on the engine that saw the fault equals it on a fresh engine:
 * tokens up to a near-tie (where either is right), and every step's logits
 * within 1e-5 of the logits' scale before it.
 */
const expectSameAsFresh = async (request: GenerateRequest, faulted = engine) => {
  fresh.clearCache()
  const want = await greedy(fresh, request)
  const got = await greedy(faulted, request)
  expect(got.completions.length).toBe(want.completions.length)
  for (let c = 0; c < want.completions.length; c++) {
    const w = want.completions[c]!
    const g = got.completions[c]!
    const key = `${w.path.join(".")}#${w.sample}`
    const wl = want.logits.get(key)!
    const gl = got.logits.get(key)!
    for (let step = 0; step < Math.min(wl.length, gl.length); step++) {
      let scale = 1
      let diff = 0
      for (let i = 0; i < config.vocabSize; i++) {
        scale = Math.max(scale, Math.abs(wl[step]![i]!))
        diff = Math.max(diff, Math.abs(wl[step]![i]! - gl[step]![i]!))
      }
      expect(diff / scale, `${key} step ${step}: logits differ`).toBeLessThan(1e-5)
      if (g.tokens[step] !== w.tokens[step]) {
        expect(nearTie(wl[step]!), `${key} step ${step}: greedy token ${g.tokens[step]} vs ${w.tokens[step]} without a near-tie`).toBe(true)
        break
      }
    }
  }
  expect(faulted.kv.tree.stats().liveSequences).toBe(0)
}

/** A signal that reports an abort at its n-th check: an interrupt at a chosen point of a request. */
const abortAtCheck = (n: number): AbortSignal => {
  let checks = 0
  const reason = new Error(`aborted at check ${n}`)
  return {
    get aborted() {
      return checks >= n
    },
    reason,
    throwIfAborted() {
      if (++checks >= n) throw reason
    }
  } as unknown as AbortSignal
}

const prompt = Array.from({ length: 21 }, (_, i) => (i * 11 + 3) % config.vocabSize)

describe("a request stopped after streaming k tokens", () => {
  it.each([1, 2, 3, 4, 7].flatMap((k) => [[k, true], [k, false]] as const))(
    "leaves the cache exact: the prompt plus those %i tokens continues as on a fresh engine (overlap %s)", async (k, overlap) => {
    const faulted = overlap ? engine : stepwise
    faulted.clearCache()
    const controller = new AbortController()
    const streamed: Array<number> = []
    const stopped = await faulted.generate(
      { tree: { tokens: prompt, samples: 1 }, sampling: { temperature: 0, maxTokens: 12 } },
      { onToken: ({ token }) => {
        streamed.push(token)
        if (streamed.length === k) controller.abort(new Error("enough"))
      } },
      controller.signal
    ).catch((e: unknown) => e)
    expect(stopped).toEqual(new Error("enough"))
    expect(streamed).toHaveLength(k)
    // One step at a time, the k-th token was placed in the trie but its KV never written: it must not be cached.
    // With overlap, the step that writes it was submitted before the token was read back: it stays.
    expect(faulted.kv.tree.match([...prompt, ...streamed]).length).toBe(prompt.length + k - (overlap ? 0 : 1))
    await expectSameAsFresh({ tree: { tokens: [...prompt, ...streamed], samples: 1 }, sampling: { temperature: 0, maxTokens: 4 } }, faulted)
  })

  it("through the Engine service: an Effect interrupt, and a stream that stops being read", async () => {
    const layer = Engine.layer({ blockSize: 4, kvBlocks: 512, kvDtype: "f32" }).pipe(
      Layer.provide(Layer.succeed(Model, Model.of({ ...model, source: { kind: "synthetic", model: config, seed: 5 } }))),
      Layer.provide(Layer.succeed(Gpu, Gpu.of(gpu)))
    )
    const request = { tree: { tokens: prompt, samples: 2 }, sampling: { temperature: 0, maxTokens: 12 } }
    const sample0 = (events: ReadonlyArray<{ readonly _tag: string }>) =>
      events.flatMap((e) => (e._tag === "Token" && (e as unknown as { sample: number }).sample === 0 ? [(e as unknown as { token: number }).token] : []))
    const followUps = await Effect.runPromise(
      Effect.gen(function*() {
        const service = yield* Engine
        const runs: Array<{ prompt: Array<number>; got: Awaited<ReturnType<typeof greedy>> }> = []
        // A consumer that takes three tokens and stops reading.
        const taken = Array.from(yield* service.stream(request).pipe(Stream.filter((e) => e._tag === "Token"), Stream.take(3), Stream.runCollect))
        expect(taken).toHaveLength(3)
        const afterStream = [...prompt, ...sample0(taken)]
        runs.push({ prompt: afterStream, got: yield* Effect.promise(() => greedy(service.engine, { tree: { tokens: afterStream, samples: 1 }, sampling: { temperature: 0, maxTokens: 4 } })) })
        // An Effect interrupt: the run loses a race to its own fourth token.
        service.engine.clearCache()
        const streamed: Array<{ _tag: string; sample: number; token: number }> = []
        let fourth: () => void = () => {}
        const fourTokens = new Promise<void>((resolve) => (fourth = resolve))
        yield* Effect.raceFirst(
          service.generate(request, { onToken: (e) => {
            streamed.push({ _tag: "Token", ...e })
            if (streamed.length === 4) fourth()
          } }),
          Effect.promise(() => fourTokens)
        )
        const afterInterrupt = [...prompt, ...sample0(streamed)]
        runs.push({ prompt: afterInterrupt, got: yield* Effect.promise(() => greedy(service.engine, { tree: { tokens: afterInterrupt, samples: 1 }, sampling: { temperature: 0, maxTokens: 4 } })) })
        expect(service.engine.kv.tree.stats().liveSequences).toBe(0)
        return runs
      }).pipe(Effect.provide(layer))
    )
    for (const { prompt: p, got } of followUps) {
      fresh.clearCache()
      const want = await greedy(fresh, { tree: { tokens: p, samples: 1 }, sampling: { temperature: 0, maxTokens: 4 } })
      const [g, w] = [got.logits.get("#0")!, want.logits.get("#0")!]
      for (let step = 0; step < w.length; step++) {
        for (let i = 0; i < config.vocabSize; i++) expect(Math.abs(g[step]![i]! - w[step]![i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(w[step]![i]!)) + 1e-5)
        if (got.completions[0]!.tokens[step] !== want.completions[0]!.tokens[step]) {
          expect(nearTie(w[step]!)).toBe(true)
          break
        }
      }
    }
  })
})

describe("a request stopped at a random point", () => {
  const tokensOf = (length: number) => fc.array(fc.integer({ min: 0, max: config.vocabSize - 1 }), { minLength: length, maxLength: length + 20 })
  const treeArbitrary: fc.Arbitrary<PromptTree> = fc.record({
    tokens: tokensOf(1),
    children: fc.array(fc.record({ tokens: tokensOf(1), samples: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 3 })
  })
  type Fault = { kind: "abort"; check: number } | { kind: "throw-on-token"; token: number } | { kind: "throw-on-step"; step: number }
  const faultArbitrary: fc.Arbitrary<Fault> = fc.oneof(
    fc.record({ kind: fc.constant("abort" as const), check: fc.integer({ min: 1, max: 14 }) }),
    fc.record({ kind: fc.constant("throw-on-token" as const), token: fc.integer({ min: 1, max: 12 }) }),
    fc.record({ kind: fc.constant("throw-on-step" as const), step: fc.integer({ min: 1, max: 5 }) })
  )

  it("then gives any follow-up the tokens and logits of a fresh engine", async () => {
    let faulted = 0
    await fc.assert(
      fc.asyncProperty(treeArbitrary, faultArbitrary, fc.integer({ min: 1, max: 6 }), tokensOf(0), fc.boolean(), async (tree, fault, maxTokens, extra, keepCache) => {
        if (!keepCache) engine.clearCache()
        const streamed = new Map<string, Array<number>>()
        const boom = new Error("fault")
        const signal = fault.kind === "abort" ? abortAtCheck(fault.check) : undefined
        let tokens = 0
        const outcome = await engine.generate({ tree, sampling: { temperature: 0, maxTokens } }, {
          onToken: ({ path, sample, token }) => {
            const key = `${path.join(".")}#${sample}`
            streamed.set(key, [...(streamed.get(key) ?? []), token])
            if (fault.kind === "throw-on-token" && ++tokens === fault.token) throw boom
          },
          onStep: ({ step }) => {
            if (fault.kind === "throw-on-step" && step === fault.step) throw boom
          }
        }, signal).then(() => "finished", (e: unknown) => e)
        if (outcome !== "finished") faulted++
        expect(engine.kv.tree.stats().liveSequences).toBe(0)
        // The follow-up: each sample node's prompt, continued by what its sample 0 streamed, and a few new tokens.
        const children = tree.children!.map((child, i) => ({
          tokens: [...child.tokens!, ...(streamed.get(`${i}#0`) ?? []), ...extra],
          samples: 1
        }))
        await expectSameAsFresh({ tree: { tokens: tree.tokens!, children }, sampling: { temperature: 0, maxTokens: 3 } })
      }),
      { numRuns: 100 }
    )
    // Most cases must actually have been interrupted for the property to mean anything.
    expect(faulted).toBeGreaterThan(50)
  })
})

describe("interrupting a long prefill", () => {
  it("stops between chunks, keeping exactly the chunks that were submitted", async () => {
    engine.clearCache()
    const long = Array.from({ length: 200 }, (_, i) => (i * 13 + 1) % config.vocabSize)
    // Checks: one before the insert, then one before each chunk after the first; abort at the third.
    const error = await engine.generate({ tree: { tokens: long, samples: 1 }, sampling: { temperature: 0, maxTokens: 2 } }, {}, abortAtCheck(3))
      .catch((e: unknown) => e)
    expect(String(error)).toContain("aborted at check 3")
    expect(engine.kv.tree.match(long).length).toBe(2 * 8)
    await expectSameAsFresh({ tree: { tokens: long.slice(0, 40), samples: 1 }, sampling: { temperature: 0, maxTokens: 3 } })
  })
})

describe("a broken model", () => {
  it("fails with NonFiniteLogits instead of emitting tokens, leaving nothing locked", async () => {
    const host = synthesizeHostWeights(config, 5)
    const [name, values] = [...host].find(([n]) => /layers\.0\..*down/.test(n))!
    values.fill(Number.NaN)
    host.set(name, values)
    const weights = uploadWeights(gpu.device, config, host, "f32")
    const broken = await TreeEngine.create(gpu.device, { config, weights, tokenizer: byteTokenizer(config.vocabSize) }, { blockSize: 4, kvBlocks: 64 })
    try {
      const tokens: Array<number> = []
      const error = await broken.generate({ tree: { tokens: prompt, samples: 2 }, sampling: { temperature: 0.7, maxTokens: 4 } }, {
        onToken: ({ token }) => void tokens.push(token)
      }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(NonFiniteLogits)
      expect((error as NonFiniteLogits).position).toBe(prompt.length - 1)
      expect(tokens).toEqual([])
      expect(broken.kv.tree.stats().liveSequences).toBe(0)
    } finally {
      broken.destroy()
      weights.destroy()
    }
  })
})

describe("hostile requests get a typed error before any work", () => {
  it("a prompt and its samples past the model's positions", async () => {
    const error = await engine.generate({ tree: { tokens: prompt, samples: 1 }, sampling: { maxTokens: 500 } }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ContextTooLong)
    expect((error as ContextTooLong).message).toContain(`${config.maxPositionEmbeddings - prompt.length}`)
  })

  it("150,000 sibling leaves and a 5,000-deep chain are walked without recursion", async () => {
    const wide: PromptTree = { tokens: [1], children: Array.from({ length: 150_000 }, (_, i) => ({ tokens: [i % 40], samples: 1 })) }
    const stop = new AbortController()
    stop.abort(new Error("stopped before prefill"))
    // Everything up to the first prefill runs: tokenizing, the context check, the wave size.
    expect(await engine.generate({ tree: wide, sampling: { maxTokens: 2 } }, {}, stop.signal).catch((e: unknown) => e))
      .toEqual(new Error("stopped before prefill"))
    let deep: PromptTree = { tokens: [2], samples: 1 }
    for (let d = 0; d < 5_000; d++) deep = { tokens: [], children: [deep] }
    deep = { tokens: [1], children: [deep] }
    expect(sampleLeaves(deep)[0]!.path).toHaveLength(5_001)
    // (JSON.stringify and deep equality recurse themselves: compare what the parse found instead.)
    expect(sampleLeaves(parsePromptTree(deep))).toEqual(sampleLeaves(deep))
    expect(await engine.generate({ tree: deep, sampling: { maxTokens: 2 } }, {}, stop.signal).catch((e: unknown) => e))
      .toEqual(new Error("stopped before prefill"))
    let deeper: PromptTree = { tokens: [2], samples: 1 }
    for (let d = 0; d < MAX_TREE_DEPTH; d++) deeper = { children: [deeper] }
    expect(() => parsePromptTree(deeper)).toThrow(`nests deeper than ${MAX_TREE_DEPTH.toLocaleString("en-US")} levels`)
    expect(engine.kv.tree.stats().liveSequences).toBe(0)
  })

  it("more samples than a request may hold, named with the bound", () => {
    const many = { text: "x", children: Array.from({ length: 100 }, () => ({ text: "y", samples: 1_000_000 })) }
    expect(() => parsePromptTree(many)).toThrow(InvalidPromptTree)
    expect(() => parsePromptTree(many)).toThrow(/more than 1,000,000 samples in all/)
    expect(() => parsePromptTree({ text: "x", samples: MAX_REQUEST_SAMPLES + 1 })).toThrow(/at most 1,000,000/)
    expect(() => parsePromptTree({ text: "x", samples: 1e999 })).toThrow(/got Infinity/)
    expect(() => parsePromptTree({ text: "x", sample: 4 })).toThrow(/unknown key "sample" \(did you mean "samples"\?\)/)
    expect(() => parsePromptTree({ text: "x", children: [{ text: "y", samples: 1 }, { txt: "z" }] })).toThrow(/\$\.children\[1\]: unknown key "txt"/)
  })

  it("option values the device cannot hold", async () => {
    for (const [options, field] of [[{ maxBatch: 100_000_000 }, "maxBatch"], [{ maxPrefillRows: 0 }, "maxPrefillRows"], [{ blockSize: 0 }, "blockSize"], [{ kvMemoryBytes: -1 }, "kvMemoryBytes"],
      // pinned kernels the device cannot run: a tile past its workgroup limits, a matmul that does not exist
      [{ kernels: { levelTile: { rows: 4096, keys: 4096, workgroupSize: 4096 } } }, "kernels.levelTile"],
      [{ kernels: { matmul: { decode: "gemv", prefill: "tiled256" as "tiled64" } } }, "kernels.matmul.prefill"]] as const) {
      const error = await TreeEngine.create(gpu.device, model, options).catch((e: unknown) => e)
      expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidEngineOptions)
      expect((error as InvalidEngineOptions).field).toBe(field)
    }
  })

  it("a pinned matrix matmul on a device without matrix units, or whose probe never passed, saying which", async () => {
    const matrix = { kernels: { matmul: { decode: "gemv", prefill: "matrix" } } } as const
    const error = await TreeEngine.create(gpu.device, model, matrix).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(InvalidEngineOptions)
    expect((error as InvalidEngineOptions).field).toBe("kernels.matmul.prefill")
    expect((error as InvalidEngineOptions).message).toMatch(/matrix kernel cannot run here: .*(no chromium-experimental-subgroup-matrix|f16 weights)/)
  })
})
