/**
 * The continuously batched scheduler: requests that run at once share decode
 * steps and still get exactly the completions each gets alone; a request
 * arriving mid-run is admitted without waiting; samples with different
 * settings decode in one batch; a pool too small for everything preempts and
 * recomputes instead of failing; an abort ends one request and no other.
 * Every comparison is with the same request run alone on a fresh engine,
 * which reads each decode step back before submitting the next (overlap off):
 * the engines under test overlap them, so every comparison also checks that
 * overlap changes no token.
 */
import { type GpuHandle, openGpu } from "@canopy/kernels"
import { Effect, Layer, Stream } from "effect"
import fc from "fast-check"
import { LevelPlanner } from "@canopy/tree-cache"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { type Completion, type GenerateRequest, type GenerateResult, TreeEngine } from "../src/engine/Engine.ts"
import type { PromptTree } from "../src/engine/PromptTree.ts"
import { Engine } from "../src/Engine.ts"
import { Gpu } from "../src/Gpu.ts"
import { Model } from "../src/Model.ts"
import type { LoadedModel } from "../src/model/model.ts"
import { relError, SMALL_CONFIG, smallModel } from "./smallModel.ts"

const config = SMALL_CONFIG

let gpu: GpuHandle
let model: LoadedModel
/** runs every request alone, its cache cleared first, one step at a time */
let alone: TreeEngine
beforeAll(async () => {
  gpu = await openGpu()
  model = smallModel(gpu.device, 9)
  alone = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 1024, maxPrefillRows: 16, kvDtype: "f32", overlap: false })
})
afterAll(() => {
  alone?.destroy()
  model?.weights.destroy()
  gpu?.close()
})

const withEngine = async <A>(options: Parameters<typeof TreeEngine.create>[2], f: (e: TreeEngine) => Promise<A>): Promise<A> => {
  const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvDtype: "f32", ...options })
  try {
    return await f(engine)
  } finally {
    engine.destroy()
  }
}

const runAlone = async (request: GenerateRequest): Promise<GenerateResult> => {
  alone.clearCache()
  return alone.generate(request)
}

const tokensOf = (c: ReadonlyArray<Completion>) => c.map((x) => ({ path: x.path, sample: x.sample, tokens: x.tokens, finishReason: x.finishReason }))

const ids = (n: number, salt: number) => Array.from({ length: n }, (_, i) => (i * 7 + salt * 13 + 1) % config.vocabSize)

/** Nothing held after the runs: no live sequence, and every used block is a cached, evictable one. */
const expectIdle = (engine: TreeEngine) => {
  const stats = engine.kv.tree.stats()
  expect(stats.liveSequences).toBe(0)
  expect(stats.evictableBlocks).toBe(stats.blocksUsed)
  // no pending token (a placeholder) stays in the trie
  for (const n of engine.kv.tree.nodes()) expect(n.tokens.every((t) => t >= 0)).toBe(true)
}

describe("requests that run at once", () => {
  it("share decode steps and each gets the completions it gets alone", async () => {
    const shared = ids(18, 1)
    const requests: Array<GenerateRequest> = [
      { tree: { tokens: shared, children: [{ tokens: ids(3, 2), samples: 3 }, { tokens: ids(5, 3), samples: 2 }] }, sampling: { temperature: 0.8, seed: 4, maxTokens: 9 } },
      { tree: { tokens: shared, samples: 4 }, sampling: { temperature: 0, maxTokens: 5 } },
      { tree: { tokens: ids(30, 4), samples: 2 }, sampling: { temperature: 1.1, topK: 5, seed: 9, maxTokens: 12 } }
    ]
    const want: Array<GenerateResult> = []
    for (const r of requests) want.push(await runAlone(r))
    await withEngine({ kvBlocks: 1024, maxPrefillRows: 16 }, async (engine) => {
      const got = await Promise.all(requests.map((r) => engine.generate(r)))
      got.forEach((g, i) => expect(tokensOf(g.completions), `request ${i}`).toEqual(tokensOf(want[i]!.completions)))
      // Batched together: some step held rows of more than one request.
      expect(Math.max(...got.map((g, i) => g.stats.meanBatch - want[i]!.stats.meanBatch))).toBeGreaterThan(0)
      // The second request's prompt is the first's shared prefix: prefilled once across both.
      expect(got[0]!.stats.reusedTokens + got[1]!.stats.reusedTokens).toBeGreaterThan(0)
      expectIdle(engine)
    })
  })

  it("admits a request that arrives mid-run without waiting for the running one", async () => {
    await withEngine({ kvBlocks: 1024 }, async (engine) => {
      const order: Array<string> = []
      let started: () => void = () => {}
      const midRun = new Promise<void>((resolve) => (started = resolve))
      const long = engine.generate({ tree: { tokens: ids(12, 5), samples: 2 }, sampling: { temperature: 0, maxTokens: 40, ignoreEos: true } }, {
        onStep: ({ step }) => step === 3 && started()
      }).then((r) => (order.push("long"), r))
      await midRun
      const short = await engine.generate({ tree: { tokens: ids(9, 6), samples: 1 }, sampling: { temperature: 0, maxTokens: 3 } })
      order.push("short")
      const longResult = await long
      expect(order).toEqual(["short", "long"])
      expect(tokensOf(short.completions)).toEqual(tokensOf((await runAlone({ tree: { tokens: ids(9, 6), samples: 1 }, sampling: { temperature: 0, maxTokens: 3 } })).completions))
      expect(longResult.completions.map((c) => c.tokens.length)).toEqual([40, 40])
      expectIdle(engine)
    })
  })

  it("ends an aborted request at the next step and no other", async () => {
    const keep: GenerateRequest = { tree: { tokens: ids(14, 7), samples: 3 }, sampling: { temperature: 0.9, seed: 2, maxTokens: 10 } }
    const want = await runAlone(keep)
    await withEngine({ kvBlocks: 1024 }, async (engine) => {
      const controller = new AbortController()
      const doomed = engine.generate({ tree: { tokens: ids(14, 7), children: [{ tokens: ids(4, 8), samples: 5 }] }, sampling: { maxTokens: 30 } }, {
        onStep: ({ step }) => step === 2 && controller.abort(new Error("client went away"))
      }, controller.signal).catch((e: unknown) => e)
      const kept = await engine.generate(keep)
      expect(String(await doomed)).toContain("client went away")
      expect(tokensOf(kept.completions)).toEqual(tokensOf(want.completions))
      expectIdle(engine)
    })
  })
})

describe("one batch, many settings", () => {
  it("decodes samples with their own temperature, top-k, top-p, seed, max tokens and stops together, as each runs alone", async () => {
    const prompt = ids(16, 9)
    const settings = [
      { temperature: 0, maxTokens: 6 },
      { temperature: 0.7, seed: 3, maxTokens: 11 },
      { temperature: 1.3, topK: 4, seed: 8, maxTokens: 4 },
      { temperature: 0.9, topP: 0.5, seed: 1, maxTokens: 9, stopTokenIds: [5, 17] },
      { temperature: 1, seed: 6, maxTokens: 14, stop: ["\u0003"] }
    ]
    const tree: PromptTree = { tokens: prompt, children: settings.map((sampling, i) => ({ tokens: [i + 1], samples: 2, sampling })) }
    const together = await withEngine({ kvBlocks: 1024 }, (engine) => engine.generate({ tree }))
    expect(together.stats.steps).toBeLessThan(settings.reduce((n, s) => n + s.maxTokens, 0))
    for (let i = 0; i < settings.length; i++) {
      const own = await runAlone({ tree: { tokens: [...prompt, i + 1], samples: 2, sampling: settings[i]! } })
      const mine = together.completions.filter((c) => c.path[0] === i).map((c) => ({ ...c, path: [] }))
      expect(tokensOf(mine), `node ${i}`).toEqual(tokensOf(own.completions))
      for (const c of mine) expect(c.tokens.length).toBeLessThanOrEqual(settings[i]!.maxTokens)
    }
  })
})

describe("overlap's extra rows", () => {
  it("count nowhere: samples that stop on a token leave the steps, rows, progress and logits of stepwise decoding", async () => {
    const request: GenerateRequest = {
      tree: { tokens: ids(7, 5), samples: 9 }, sampling: { temperature: 1.3, seed: 12, maxTokens: 15, stopTokenIds: [2, 9, 21, 33] }
    }
    const observe = async (engine: TreeEngine) => {
      const live: Array<number> = []
      const logitRows: Array<string> = []
      const result = await engine.generate(request, {
        onStep: (p) => live.push(p.live),
        onLogits: (e) => logitRows.push(e.rows.map((r) => `${r.sample}@${r.position}`).join(" "))
      })
      const { steps, generatedTokens, meanBatch } = result.stats
      return { completions: tokensOf(result.completions), stats: { steps, generatedTokens, meanBatch }, live, logitRows }
    }
    await withEngine({ kvBlocks: 1024 }, async (engine) => {
      const got = await observe(engine)
      alone.clearCache()
      const want = await observe(alone)
      // samples end at several steps before their limit, so overlap decoded a row past each
      const lengths = got.completions.map((c) => c.tokens.length)
      expect(new Set(lengths).size).toBeGreaterThan(2)
      expect(lengths.filter((n) => n < 15).length).toBeGreaterThan(2)
      expect(got).toEqual(want)
    })
  })
})

describe("decode steps over the same samples", () => {
  it("refresh the last plan while the samples' paths stay, overlapped or stepwise", async () => {
    const request: GenerateRequest = { tree: { tokens: ids(9, 3), samples: 12 }, sampling: { temperature: 1, seed: 4, maxTokens: 24, ignoreEos: true } }
    const planners = vi.spyOn(LevelPlanner.prototype, "plan")
    try {
      for (const overlap of [true, false]) {
        planners.mockClear()
        const result = await withEngine({ kvBlocks: 1024, overlap }, (engine) => engine.generate(request))
        const planner = planners.mock.contexts[0] as LevelPlanner
        expect(new Set(planners.mock.contexts).size).toBe(1)
        // every decode step plans once; once the samples' first tokens have their own leaves, the leaves grow in place
        expect(planner.built + planner.refreshed, `overlap ${overlap}`).toBe(result.stats.steps)
        expect(planner.refreshed, `overlap ${overlap}`).toBeGreaterThan(result.stats.steps / 2)
      }
    } finally {
      planners.mockRestore()
    }
  })
})

describe("a pool too small for every sample at once", () => {
  it("preempts the youngest samples and recomputes them, with the completions of a large pool", async () => {
    const request: GenerateRequest = {
      tree: { tokens: ids(21, 10), children: [{ tokens: ids(2, 11), samples: 6 }, { tokens: ids(3, 12), samples: 5 }] },
      sampling: { temperature: 0.8, seed: 5, maxTokens: 24, ignoreEos: true }
    }
    const want = await runAlone(request)
    await withEngine({ kvBlocks: 40 }, async (engine) => {
      const got = await engine.generate(request)
      expect(got.stats.preemptions).toBeGreaterThan(0)
      expect(got.stats.peakBlocks).toBeLessThanOrEqual(40)
      expect(tokensOf(got.completions)).toEqual(tokensOf(want.completions))
      expectIdle(engine)
    })
  })
})

describe("random requests at once, some aborted", () => {
  const tree = fc.record({
    tokens: fc.array(fc.integer({ min: 0, max: config.vocabSize - 1 }), { minLength: 1, maxLength: 24 }),
    children: fc.array(
      fc.record({ tokens: fc.array(fc.integer({ min: 0, max: config.vocabSize - 1 }), { minLength: 1, maxLength: 6 }), samples: fc.integer({ min: 1, max: 3 }) }),
      { minLength: 1, maxLength: 3 }
    )
  })
  const request = fc.record({
    tree,
    maxTokens: fc.integer({ min: 1, max: 8 }),
    // samples that stop early: with overlap, their next step's row is dropped
    stops: fc.array(fc.integer({ min: 0, max: config.vocabSize - 1 }), { maxLength: 8 }),
    seed: fc.integer({ min: 0, max: 1000 }),
    abortAtStep: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined })
  })

  it("give every request that runs to the end its own completions, and leave nothing held", async () => {
    await withEngine({ kvBlocks: 96, maxPrefillRows: 8 }, async (engine) => {
      await fc.assert(
        fc.asyncProperty(fc.array(request, { minLength: 2, maxLength: 4 }), async (specs) => {
          const runs = specs.map((s) => {
            const controller = new AbortController()
            const r: GenerateRequest = { tree: s.tree, sampling: { temperature: 0.8, seed: s.seed, maxTokens: s.maxTokens, stopTokenIds: s.stops } }
            const events = s.abortAtStep === undefined ? {} : { onStep: ({ step }: { step: number }) => step === s.abortAtStep && controller.abort(new Error("stop")) }
            return { r, result: engine.generate(r, events, controller.signal).then((x) => x, (e: unknown) => e) }
          })
          for (const { r, result } of runs) {
            const got = await result
            if (got instanceof Error) {
              expect(got.message).toBe("stop")
              continue
            }
            expect(tokensOf((got as GenerateResult).completions)).toEqual(tokensOf((await runAlone(r)).completions))
          }
          expectIdle(engine)
        }),
        { numRuns: 12 }
      )
    })
  })
})

describe("the Engine service", () => {
  it("streams each step's logits when asked, the logits generate reports", async () => {
    const request: GenerateRequest = { tree: { tokens: ids(10, 13), samples: 2 }, sampling: { temperature: 0.5, seed: 3, maxTokens: 4 } }
    alone.clearCache()
    const want: Array<Float32Array> = []
    await alone.generate(request, { onLogits: ({ logits }) => want.push(logits) })
    const layer = Engine.layer({ blockSize: 4, kvBlocks: 1024, maxPrefillRows: 16, kvDtype: "f32" }).pipe(
      Layer.provide(Layer.succeed(Model, Model.of({ ...model, source: { kind: "synthetic", model: config, seed: 9 } }))),
      Layer.provide(Layer.succeed(Gpu, Gpu.of(gpu)))
    )
    const events = await Effect.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        const plain = Array.from(yield* Stream.runCollect(engine.stream(request)))
        const withLogits = Array.from(yield* Stream.runCollect(engine.stream(request, { logits: true })))
        return { plain, withLogits }
      }).pipe(Effect.provide(layer))
    )
    expect(events.plain.some((e) => e._tag === "Logits")).toBe(false)
    const got = events.withLogits.flatMap((e) => (e._tag === "Logits" ? [e.logits] : []))
    expect(got.length).toBe(want.length)
    // The second run finds the prompt cached: its KV was computed by another forward, an f32 rounding apart.
    got.forEach((l, i) => expect(relError(l, want[i]!)).toBeLessThan(1e-5))
  })
})

describe("the cache between requests", () => {
  const again: GenerateRequest = {
    tree: { tokens: ids(10, 11), samples: 6 }, sampling: { temperature: 1, seed: 5, maxTokens: 20, ignoreEos: true }
  }

  it.each([true, false])("decodes a request again over its own cached samples with the same completions and no more blocks (overlap %s)", async (overlap) => {
    await withEngine({ kvBlocks: 1024, overlap }, async (engine) => {
      const first = await engine.generate(again)
      const nodes = engine.kv.tree.stats().nodes
      const second = await engine.generate(again)
      expect(tokensOf(second.completions)).toEqual(tokensOf(first.completions))
      // Retracing a cached sample takes its leaf over rather than splitting it token by token (a block each).
      // With overlap each sample's first token gets a block of its own before it is known to match the cache.
      const samples = again.tree.samples ?? 1
      expect(second.stats.peakBlocks).toBeLessThanOrEqual(first.stats.peakBlocks + (overlap ? samples : 1))
      expect(engine.kv.tree.stats().nodes).toBe(nodes)
      expectIdle(engine)
    })
  })

  // With overlap the step after the one a sample stops in is submitted before the stop is read back: that one step its place idles.
  it.each([false, true])("fills a freed place in the next step it can when the sample's prompt is cached (overlap %s)", async (overlap) => {
    const request: GenerateRequest = {
      tree: { tokens: ids(8, 12), samples: 7 }, sampling: { temperature: 1.5, seed: 3, maxTokens: 16, stopTokenIds: [2, 9, 21, 33] }
    }
    await withEngine({ kvBlocks: 1024, maxBatch: 2, overlap }, async (engine) => {
      let finishedBefore = 0
      const short: Array<number> = []
      const finishedIn = new Set<number>()
      const result = await engine.generate(request, {
        onStep: ({ step, live, finishedSamples, totalSamples }) => {
          if (totalSamples - finishedBefore >= 2 && live < 2) short.push(step)
          if (finishedSamples > finishedBefore) finishedIn.add(step)
          finishedBefore = finishedSamples
        }
      })
      expect(new Set(result.completions.map((c) => c.tokens.length)).size).toBeGreaterThan(1)
      if (overlap) {
        expect(short.length).toBeGreaterThan(0)
        expect(short.filter((step) => !finishedIn.has(step - 1))).toEqual([])
      } else {
        expect(short).toEqual([])
      }
      expect(tokensOf(result.completions)).toEqual(tokensOf((await runAlone(request)).completions))
    })
  })
})
