/**
 * The engine against the float64 CPU reference forward pass: logits of
 * prefill and of every decode step, and greedy tokens with hydragen, the
 * baseline and the reference on random tiny models and random prompt trees.
 */
import { bf16ToF32, chooseLevelTile, createTreeAttention, defaultMatmulChoice, f32ToBf16, type GpuHandle, openGpu, type WeightType } from "@canopy/kernels"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TreeEngine } from "../src/engine/Engine.ts"
import { EngineCapacityError, InvalidEngineOptions, InvalidSampling } from "../src/engine/errors.ts"
import { KvCache } from "../src/engine/KvCache.ts"
import { planRows } from "../src/engine/planRows.ts"
import { InvalidPromptTree, type PromptTree } from "../src/engine/PromptTree.ts"
import type { ModelConfig } from "../src/model/config.ts"
import { Forward } from "../src/model/forward.ts"
import type { LoadedModel } from "../src/model/model.ts"
import { referenceLogits } from "../src/model/reference.ts"
import { byteTokenizer } from "../src/model/tokenizer.ts"
import { synthesizeHostWeights, uploadWeights } from "../src/model/weights.ts"
import { relError } from "./smallModel.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

/** Small random Llama-family configs; head dim and GQA groups from a short list so kernels compile once. */
const configArbitrary: fc.Arbitrary<ModelConfig> = fc
  .record({
    kvHeads: fc.constantFrom(1, 2),
    group: fc.constantFrom(1, 2),
    layers: fc.integer({ min: 1, max: 2 }),
    vocab: fc.integer({ min: 24, max: 48 }),
    bias: fc.boolean(),
    tied: fc.boolean(),
    theta: fc.constantFrom(10_000, 500_000)
  })
  .map(({ kvHeads, group, layers, vocab, bias, tied, theta }): ModelConfig => ({
    architecture: bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM",
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: layers,
    numHeads: kvHeads * group,
    numKvHeads: kvHeads,
    headDim: 16,
    rmsNormEps: 1e-5,
    ropeTheta: theta,
    ropeScaling: { type: "none" },
    vocabSize: vocab,
    tieWordEmbeddings: tied,
    attentionBias: bias,
    maxPositionEmbeddings: 4096,
    bosTokenId: undefined,
    eosTokenIds: []
  }))

/** A model on the GPU and the host values it holds (matrices rounded to bf16 when held as bf16). */
const makeModel = (config: ModelConfig, seed: number, weightType: WeightType = "f32") => {
  const synthetic = synthesizeHostWeights(config, seed)
  const weights = uploadWeights(gpu.device, config, synthetic, weightType)
  const host = weights.weightType === "f32" ? synthetic : new Map([...synthetic].map(([name, values]) =>
    [name, /(norm|bias)/.test(name) ? values : values.map((v) => bf16ToF32(f32ToBf16(v)))]))
  const model: LoadedModel = { config, weights, tokenizer: byteTokenizer(config.vocabSize) }
  return { host, model }
}

/** Greedy continuation by the CPU reference; stops early where the top two logits nearly tie (f32 may pick either). */
const referenceGreedy = (config: ModelConfig, host: Map<string, Float32Array>, prompt: ReadonlyArray<number>, steps: number) => {
  const tokens = [...prompt]
  const out: Array<number> = []
  for (let i = 0; i < steps; i++) {
    const logits = referenceLogits(config, host, tokens).at(-1)!
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b)
    const [best, second] = [logits[order[0]!]!, logits[order[1]!]!]
    out.push(order[0]!)
    if (best - second < 1e-3 * Math.max(1, Math.abs(best))) return { tokens: out, decided: i }
    tokens.push(order[0]!)
  }
  return { tokens: out, decided: steps }
}

/** Random prompt trees over the model's vocabulary: depth 1–3, fan-out 1–3, some nodes ask for samples. */
const treeArbitrary = (vocab: number): fc.Arbitrary<PromptTree> => {
  const run = fc.array(fc.integer({ min: 0, max: vocab - 1 }), { minLength: 1, maxLength: 20 })
  const leaf = fc.record({ tokens: run, samples: fc.integer({ min: 1, max: 3 }) })
  const mid = fc.record({
    tokens: run,
    samples: fc.constantFrom(0, 0, 1),
    children: fc.array(leaf, { minLength: 1, maxLength: 3 })
  })
  return fc.record({ tokens: run, children: fc.array(fc.oneof(leaf, mid), { minLength: 1, maxLength: 3 }) })
}

/** A random engine case: a config with a tree over its vocabulary, a weight seed, a block size. */
const engineCase = [
  configArbitrary.chain((config) => fc.tuple(fc.constant(config), treeArbitrary(config.vocabSize))),
  fc.integer({ min: 1, max: 1000 }),
  fc.integer({ min: 1, max: 16 })
] as const

const promptOf = (tree: PromptTree, path: ReadonlyArray<number>): Array<number> => {
  const tokens = [...(tree.tokens ?? [])]
  let node = tree
  for (const i of path) {
    node = node.children![i]!
    tokens.push(...(node.tokens ?? []))
  }
  return tokens
}

describe("prefill through the level machinery", () => {
  it("gives the reference logits at every position of a node that extends a cached ancestor", async () => {
    await fc.assert(
      fc.asyncProperty(
        configArbitrary,
        fc.integer({ min: 1, max: 1000 }),
        fc.array(fc.integer({ min: 0, max: 23 }), { minLength: 2, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        async (config, seed, tokens, blockSize) => {
          const { host, model } = makeModel(config, seed)
          // f32 KV: the logits are held to the f32 tolerance (the f16 cache has its own test below)
          const kv = await KvCache.create(gpu.device, config, { blockSize, numBlocks: 64, shards: seed % 2 === 1 ? config.numKvHeads : 1, kvDtype: "f32" })
          const attention = await createTreeAttention(gpu.device, {
            heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, blockSize, poolShards: kv.shards, kvDtype: kv.kvDtype
          })
          const forward = await Forward.create(gpu.device, model.weights, {
            maxRows: 64, maxLogitRows: 64, kvPools: kv.pools, blockSize, numBlocks: kv.numBlocks, poolShards: kv.shards, kvDtype: kv.kvDtype
          })
          try {
            // The ancestor: its own node, prefilled first; then the child node's rows see it fully and themselves causally.
            const cut = Math.max(1, tokens.length >> 1)
            const want = referenceLogits(config, host, tokens)
            const pieces: Array<[number, number]> = [[0, cut], [cut, tokens.length]]
            let seq = -1
            for (const [from, to] of pieces) {
              const placed = seq < 0 ? kv.tree.insert(tokens.slice(0, to)) : kv.tree.append(seq, tokens.slice(from, to))
              seq = placed.seq
              const positions = Array.from({ length: to - from }, (_, i) => from + i)
              const plan = planRows(kv.tree, positions.map(() => seq), positions)
              const prepared = attention.prepare(plan)
              const slots = new Uint32Array(2 * positions.length)
              positions.forEach((p, i) => {
                const { block, slot } = kv.tree.slotOf(seq, p)
                slots[2 * i] = block
                slots[2 * i + 1] = slot
              })
              await forward.step({
                tokens: Uint32Array.from(positions, (p) => tokens[p]! % config.vocabSize),
                positions: Uint32Array.from(positions),
                slots,
                logitRows: Uint32Array.from(positions, (_, i) => i),
                sampling: positions.map((p) => ({ temperature: 0, topK: 0, topP: 1, seed: 0, sequence: 0, step: p }))
              }, (encoder, _l, b) => attention.encode(encoder, prepared, b))
              const logits = await forward.readLogits(positions.length)
              positions.forEach((p, i) => {
                const got = logits.subarray(i * config.vocabSize, (i + 1) * config.vocabSize)
                expect(relError(got, want[p]!), `position ${p}`).toBeLessThan(1e-4)
              })
              prepared.destroy()
            }
          } finally {
            forward.destroy()
            attention.destroy()
            kv.destroy()
            model.weights.destroy()
          }
        }
      ),
      { numRuns: 8 }
    )
  })
})

describe("TreeEngine", () => {
  it("decodes greedily like the CPU reference, with hydragen and with the baseline, on random trees", async () => {
    let runs = 0
    await fc.assert(
      fc.asyncProperty(
        ...engineCase,
        async ([config, tree], seed, blockSize) => {
          const { host, model } = makeModel(config, seed)
          // odd seeds keep each KV head's pools in a shard of its own
          const kvShards = seed % 2 === 1 ? config.numKvHeads : 1
          // every other run pins the stacked level tile and a GPU's cooperative matmuls (GEMV, tiled GEMM)
          const kernels = runs++ % 2 === 1
            ? { levelTile: chooseLevelTile(config.headDim, gpu.device.limits, "stacked"), matmul: defaultMatmulChoice("gpu") }
            : undefined
          const engine = await TreeEngine.create(gpu.device, model, {
            blockSize, kvBlocks: 512, maxBatch: 32, kvShards, kvDtype: "f32", ...(kernels !== undefined ? { kernels } : {})
          })
          try {
            if (kernels !== undefined) {
              expect(engine.tuning.levelTile.value).toEqual(kernels.levelTile)
              expect(engine.tuning.matmul.choice).toEqual(kernels.matmul)
            }
            const maxTokens = 4
            const hydragen = await engine.generate({ tree, sampling: { temperature: 0, maxTokens }, attention: "hydragen" })
            const baseline = await engine.generate({ tree, sampling: { temperature: 0, maxTokens }, attention: "baseline" })
            for (const c of hydragen.completions) {
              const want = referenceGreedy(config, host, promptOf(tree, c.path), maxTokens)
              expect(c.tokens.slice(0, want.decided + 1)).toEqual(want.tokens.slice(0, want.decided + 1))
              expect(c.finishReason).toBe("length")
            }
            expect(baseline.completions.map((c) => c.tokens)).toEqual(hydragen.completions.map((c) => c.tokens))
            expect(engine.kv.tree.stats().liveSequences).toBe(0)
          } finally {
            engine.destroy()
            model.weights.destroy()
          }
        }
      ),
      { numRuns: 6 }
    )
  })

  it("samples from logits that match the reference at every decode step", async () => {
    await fc.assert(
      fc.asyncProperty(
        configArbitrary.chain((config) => fc.tuple(fc.constant(config), treeArbitrary(config.vocabSize))),
        fc.integer({ min: 1, max: 1000 }),
        fc.constantFrom("hydragen" as const, "baseline" as const),
        fc.constantFrom<WeightType>("f32", "bf16"),
        async ([config, tree], seed, attention, weightType) => {
          const { host, model } = makeModel(config, seed, weightType)
          const kvShards = seed % 2 === 1 ? config.numKvHeads : 1
          const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 512, maxBatch: 32, kvShards, kvDtype: "f32" })
          const generated = new Map<string, Array<number>>()
          const key = (path: ReadonlyArray<number>, sample: number) => `${path.join(".")}#${sample}`
          let checked = 0
          try {
            await engine.generate(
              { tree, sampling: { temperature: 0.9, seed, maxTokens: 3 }, attention },
              {
                onToken: ({ path, sample, token }) => {
                  const k = key(path, sample)
                  generated.set(k, [...(generated.get(k) ?? []), token])
                },
                onLogits: ({ rows, logits }) =>
                  rows.forEach((row, r) => {
                    const context = [...promptOf(tree, row.path), ...(generated.get(key(row.path, row.sample)) ?? [])]
                    expect(row.position).toBe(context.length - 1)
                    const want = referenceLogits(config, host, context).at(-1)!
                    const got = logits.subarray(r * config.vocabSize, (r + 1) * config.vocabSize)
                    expect(relError(got, want)).toBeLessThan(1e-4)
                    checked++
                  })
              }
            )
            expect(checked).toBeGreaterThan(0)
          } finally {
            engine.destroy()
            model.weights.destroy()
          }
        }
      ),
      { numRuns: 4 }
    )
  })
})

/**
 * What an f16 KV cache may change in the logits: K and V are rounded to f16
 * (relative error at most 2^-11 each) and attention computes in f32. Seen on
 * these tiny models: at most 3.7e-4 (norm-wise, 30 random trees), so 2e-3
 * leaves a margin of five and is still five times tighter than the bound of
 * the f16 paths in docs/design.md (1e-2); a KV value misread shows far above it.
 */
const F16_LOGIT_BOUND = 2e-3

describe("TreeEngine with an f16 KV cache", () => {
  it("decodes greedily as with f32 KV on random trees, or diverges only where the f32 logits nearly tie", async () => {
    let divergences = 0
    await fc.assert(
      fc.asyncProperty(
        ...engineCase,
        async ([config, tree], seed, blockSize) => {
          const { model } = makeModel(config, seed)
          const kvShards = seed % 2 === 1 ? config.numKvHeads : 1
          const options = { blockSize, kvBlocks: 512, maxBatch: 32, kvShards }
          const engines = [
            await TreeEngine.create(gpu.device, model, { ...options, kvDtype: "f32" }),
            await TreeEngine.create(gpu.device, model, { ...options, kvDtype: "f16" })
          ] as const
          try {
            expect(engines.map((e) => e.kv.kvDtype)).toEqual(["f32", "f16"])
            const runs = []
            for (const engine of engines) {
              const logits = new Map<string, Float32Array>()
              const result = await engine.generate(
                { tree, sampling: { temperature: 0, maxTokens: 4 } },
                {
                  onLogits: ({ rows, logits: all }) =>
                    rows.forEach((row, r) =>
                      logits.set(`${row.path.join(".")}#${row.sample}@${row.position}`, all.slice(r * config.vocabSize, (r + 1) * config.vocabSize)))
                }
              )
              runs.push({ completions: result.completions, logits })
            }
            const [f32, f16] = runs as [(typeof runs)[0], (typeof runs)[0]]
            expect(f16.completions.map((c) => [c.path, c.sample])).toEqual(f32.completions.map((c) => [c.path, c.sample]))
            f32.completions.forEach((want, n) => {
              const got = f16.completions[n]!
              const start = promptOf(tree, want.path).length - 1
              for (let i = 0; i < want.tokens.length; i++) {
                const key = `${want.path.join(".")}#${want.sample}@${start + i}`
                const a = f32.logits.get(key)!
                const b = f16.logits.get(key)!
                // every step up to a divergence sees the same context: its logits agree within the f16 bound
                expect(relError(b, a), key).toBeLessThan(F16_LOGIT_BOUND)
                if (got.tokens[i] === want.tokens[i]) continue
                // f16 picked another token: it can only be one the f32 logits rank within the logits' own change of the best
                const change = a.reduce((m, x, j) => Math.max(m, Math.abs(x - b[j]!)), 0)
                const gap = a[want.tokens[i]!]! - a[got.tokens[i]!]!
                expect(gap, `${key}: f32 picks ${want.tokens[i]}, f16 ${got.tokens[i]}`).toBeLessThanOrEqual(2 * change)
                divergences++
                break
              }
            })
          } finally {
            for (const e of engines) e.destroy()
            model.weights.destroy()
          }
        }
      ),
      { numRuns: 4 }
    )
    // a near tie among greedy picks is rare: most trees must decode identically
    expect(divergences).toBeLessThanOrEqual(2)
  })
})

describe("KvCache element types", () => {
  const config: ModelConfig = {
    architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
    headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: { type: "none" }, vocabSize: 40,
    tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 4096, bosTokenId: undefined, eosTokenIds: []
  }

  it("an f16 cache holds twice the blocks of an f32 one in the same memory, in pools of the same bytes, in shards too", async () => {
    const memoryBytes = 2 ** 20
    for (const shards of [1, 2]) {
      const f32 = await KvCache.create(gpu.device, config, { blockSize: 16, memoryBytes, kvDtype: "f32", shards })
      const f16 = await KvCache.create(gpu.device, config, { blockSize: 16, memoryBytes, kvDtype: "f16", shards })
      try {
        // 2 pools × 2 layers × blocks × 16 slots × 2 KV heads × 16 dims × element bytes
        expect(f32.numBlocks).toBe(Math.floor(memoryBytes / (4 * 16 * 2 * 16 * 4)))
        expect(f16.numBlocks).toBe(2 * f32.numBlocks)
        expect(f16.pools[0]!.k.size).toBe(f32.pools[0]!.k.size)
        expect(f16.shardBytes).toBe(f32.shardBytes)
      } finally {
        f32.destroy()
        f16.destroy()
      }
      const same = await KvCache.create(gpu.device, config, { blockSize: 16, numBlocks: 32, kvDtype: "f16", shards })
      const wide = await KvCache.create(gpu.device, config, { blockSize: 16, numBlocks: 32, kvDtype: "f32", shards })
      expect(2 * same.pools[1]!.v.size).toBe(wide.pools[1]!.v.size)
      same.destroy()
      wide.destroy()
    }
  })

  it("refuses f16 for an odd head dim, naming kvDtype", async () => {
    const error = await KvCache.create(gpu.device, { ...config, headDim: 15 }, { blockSize: 4, numBlocks: 4, kvDtype: "f16" }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(InvalidEngineOptions)
    expect((error as InvalidEngineOptions).field).toBe("kvDtype")
    expect((error as InvalidEngineOptions).problem).toMatch(/must be even/)
  })

  it("attention and KV append built for f32 refuse the pools of an f16 cache", async () => {
    const kv = await KvCache.create(gpu.device, config, { blockSize: 4, numBlocks: 4, kvDtype: "f16" })
    const { model } = makeModel(config, 1)
    try {
      await expect(Forward.create(gpu.device, model.weights, {
        maxRows: 4, maxLogitRows: 4, kvPools: kv.pools, blockSize: 4, numBlocks: kv.numBlocks, kvDtype: "f32"
      })).rejects.toThrow(/holds f16 values/)
    } finally {
      kv.destroy()
      model.weights.destroy()
    }
  })
})

describe("TreeEngine requests", () => {
  const config: ModelConfig = {
    architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
    headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: { type: "none" }, vocabSize: 40,
    tieWordEmbeddings: false, attentionBias: false, maxPositionEmbeddings: 4096, bosTokenId: undefined, eosTokenIds: []
  }
  const few = Array.from({ length: 37 }, (_, i) => (i * 7) % 40)
  const tree: PromptTree = {
    tokens: few,
    children: [
      { tokens: [1, 2, 3], samples: 3 },
      { tokens: [4, 5], samples: 2, children: [{ tokens: [6], samples: 2 }] }
    ]
  }
  // One model per seed for the whole describe: no test changes a model, and each engine binds its own KV pool.
  const models = new Map<number, LoadedModel>()
  const modelOf = (seed: number): LoadedModel => {
    let model = models.get(seed)
    if (model === undefined) {
      model = makeModel(config, seed).model
      models.set(seed, model)
    }
    return model
  }
  afterAll(() => {
    for (const model of models.values()) model.weights.destroy()
  })

  it("runs a request larger than the KV pool continuously or in waves, with the same tokens", async () => {
    const model = modelOf(7)
    const big = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 256 })
    // the small pool also keeps each KV head in a shard of its own
    const small = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 24, kvShards: 2 })
    try {
      const request = { tree, sampling: { temperature: 0.7, seed: 11, maxTokens: 6 } }
      const a = await big.generate(request)
      const continuous = await small.generate(request)
      const waves = await small.generate({ ...request, scheduling: "waves" })
      expect(a.stats.waves).toBe(1)
      expect(waves.stats.waves).toBeGreaterThan(1)
      expect(small.kv.shards).toBe(2)
      for (const r of [continuous, waves]) expect(r.stats.peakBlocks).toBeLessThanOrEqual(24)
      // seeded sampling depends on (seed, sample, step) only: batching, waves and preemption do not change it
      expect(continuous.completions).toEqual(a.completions)
      expect(waves.completions).toEqual(a.completions)
      expect(a.completions).toHaveLength(7)
      expect(small.kv.tree.stats().liveSequences).toBe(0)
    } finally {
      big.destroy()
      small.destroy()
    }
  })

  it("refuses, before any work, a request that can never fit", async () => {
    const model = modelOf(7)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 8 })
    try {
      const error = await engine.generate({ tree, sampling: { maxTokens: 64 } }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(EngineCapacityError)
      expect((error as EngineCapacityError).capacityBlocks).toBe(8)
      expect((error as EngineCapacityError).neededBlocks).toBeGreaterThan(8)
      expect(engine.kv.pool.used).toBe(0)
    } finally {
      engine.destroy()
    }
  })

  it("reuses cached prefixes across requests, and single-level sharing gives the same tokens with more prefill", async () => {
    const model = modelOf(3)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 512 })
    try {
      const request = { tree, sampling: { temperature: 0, maxTokens: 4 } }
      const first = await engine.generate(request)
      const again = await engine.generate(request)
      expect(first.stats.prefillTokens).toBeGreaterThan(0)
      expect(again.stats.prefillTokens).toBe(0)
      expect(again.stats.reusedTokens).toBe(first.stats.prefillTokens + first.stats.reusedTokens)
      expect(again.completions).toEqual(first.completions)
      const held = engine.kv.pool.used
      expect(engine.clearCache()).toBe(held)
      expect(engine.kv.pool.used).toBe(0)
      const cleared = await engine.generate(request)
      expect(cleared.stats.prefillTokens).toBe(first.stats.prefillTokens)
      expect(cleared.completions).toEqual(first.completions)
      const flat = await engine.generate({ ...request, sharing: "single-level" })
      expect(flat.completions.map((c) => c.tokens)).toEqual(first.completions.map((c) => c.tokens))
      // each leaf group prefills its whole prompt once: the few-shot prefix three times instead of once
      expect(flat.stats.prefillTokens).toBeGreaterThanOrEqual(first.stats.prefillTokens + 2 * few.length)
      expect(first.stats.sharingFactor).toBeGreaterThan(flat.stats.sharingFactor)
    } finally {
      engine.destroy()
    }
  })

  it("leaves nothing locked when a request fails midway, and stays usable", async () => {
    const model = modelOf(3)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 512 })
    try {
      const request = { tree, sampling: { temperature: 0, maxTokens: 4 } }
      const failure = new Error("a consumer gave up")
      const error = await engine.generate(request, { onStep: ({ step }) => { if (step === 2) throw failure } }).catch((e: unknown) => e)
      expect(error).toBe(failure)
      expect(engine.kv.tree.stats().liveSequences).toBe(0)
      // every block is back in the pool or held by an unlocked (evictable) cached node
      const held = engine.kv.pool.used
      expect(held).toBeGreaterThan(0)
      expect(engine.kv.tree.evict(engine.kv.numBlocks)).toBe(held)
      expect(engine.kv.pool.used).toBe(0)
      const after = await engine.generate(request)
      expect(after.completions).toHaveLength(7)
    } finally {
      engine.destroy()
    }
  })

  it("stops at stop tokens and reports the finish reason", async () => {
    const model = modelOf(3)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 512 })
    try {
      const free = await engine.generate({ tree, sampling: { temperature: 0, maxTokens: 5 } })
      const c = free.completions[0]!
      const stopAt = c.tokens[2]!
      const stopped = await engine.generate({ tree, sampling: { temperature: 0, maxTokens: 5, stopTokenIds: [stopAt] } })
      const s = stopped.completions[0]!
      expect(s.finishReason).toBe("eos")
      expect(s.tokens).toEqual(c.tokens.slice(0, c.tokens.indexOf(stopAt)))
    } finally {
      engine.destroy()
    }
  })

  it.each([
    [{ temperature: -1 }, "temperature"],
    [{ topP: 0 }, "topP"],
    [{ maxTokens: 0 }, "maxTokens"],
    [{ stopTokenIds: [999] }, "stopTokenIds"]
  ])("rejects bad sampling %j naming the field", async (sampling, field) => {
    const model = modelOf(3)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 64 })
    try {
      const error = await engine.generate({ tree, sampling }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidSampling)
      expect((error as InvalidSampling).field).toBe(field)
    } finally {
      engine.destroy()
    }
  })

  it("rejects a tree with out-of-vocabulary tokens or no samples", async () => {
    const model = modelOf(3)
    const engine = await TreeEngine.create(gpu.device, model, { blockSize: 4, kvBlocks: 64 })
    try {
      const bad = await engine.generate({ tree: { tokens: [1, 99], samples: 1 } }).catch((e: unknown) => e)
      expect(bad).toBeInstanceOf(InvalidPromptTree)
      expect((bad as InvalidPromptTree).problem).toContain("99")
      const none = await engine.generate({ tree: { tokens: [1, 2] } }).catch((e: unknown) => e)
      expect(none).toBeInstanceOf(InvalidPromptTree)
      expect(engine.kv.pool.used).toBe(0)
    } finally {
      engine.destroy()
    }
  })
})
