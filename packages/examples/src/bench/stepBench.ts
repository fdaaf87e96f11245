/**
 * The host work of one decoding step: what the CPU spends from the start of
 * planning to the step's submit, and what it asks of the GPU (dispatches,
 * bind groups and buffers created, bytes written), on the path the engine
 * takes — planLevels over the tree, the attention's prepare, the forward's
 * encode with every layer's attention, the submit.
 *
 * The model has a preset's layer count and head layout at the smallest
 * widths (head dim 8, hidden 32), so that on a software adapter the GPU work
 * stays small; none of the host work depends on the widths, nor on the
 * number of heads (it sets how many workgroups each dispatch has, not how
 * many dispatches or bind groups there are), so `heads` may be lowered
 * where the GPU's work would take too long (a software adapter at batch
 * 1,024 and 40 heads: minutes a step). The tree has
 * three levels, as a sampling run's: a few-shot prefix, problems under it,
 * `batch` samples under those, each on its own leaf. Every step decodes one
 * token per sample, and the sampled tokens grow the leaves as decoding does.
 *
 * Host time is CPU time (the process's, user and system) from the start of
 * planning to the return of the submit, the wall-clock time beside it: on a
 * machine other processes load, the wall clock also counts their turns on
 * the cores. The GPU's time is kept apart: each step waits for the previous
 * one to finish before its clock starts, so on a software adapter (whose
 * "GPU" is the same CPU cores) the GPU's work never runs inside a
 * measurement. That wait first sleeps for most of the last step's GPU time:
 * while a promise of the webgpu package is pending it polls the device,
 * taking a core from a software adapter's threads. And the clock starts a
 * moment after the wait, once the adapter's worker threads (which spin a
 * while before they sleep) and the collector's are idle: the process's CPU
 * time is then the step's own.
 */
import { countsSince, createTreeAttention, type GpuWorkCounts, readUint32, sumCounts, type TreeAttention } from "@canopy/kernels"
import { Forward, type ForwardBatch, KvCache, loadModel, type ModelConfig, PRESETS } from "@canopy/runtime"
import type { SamplingParams } from "@canopy/kernels"
import { planLevels, type SeqId } from "@canopy/tree-cache"
import { setTimeout as sleep } from "node:timers/promises"
import { spreadOf, type Spread } from "./figures.ts"

export const STEP_PRESETS = ["codellama-7b", "codellama-13b"] as const
export type StepPreset = (typeof STEP_PRESETS)[number]

export const isStepPreset = (name: string): name is StepPreset => (STEP_PRESETS as ReadonlyArray<string>).includes(name)

/** The three-level tree of every point. */
export const STEP_TREE = { prefixTokens: 64, problems: 8, problemTokens: 32, sampleTokens: 1 } as const

const BLOCK_SIZE = 16

/** how long a step waits, idle, before its clock starts (see above) */
const SETTLE_MS = 50

export interface StepBenchOptions {
  readonly preset: StepPreset
  /** layers of the model (default: the preset's) */
  readonly layers?: number
  /** query and KV heads (default: the preset's; both presets have one query head per KV head) */
  readonly heads?: number
  readonly batches: ReadonlyArray<number>
  /** untimed steps first at every point: the first makes the bind groups and grows the plan buffers */
  readonly warmup: number
  /** timed steps at every point */
  readonly steps: number
  readonly onProgress?: (text: string) => void
}

export interface StepPhases {
  readonly planMs: number
  readonly prepareMs: number
  readonly batchMs: number
  readonly encodeMs: number
  readonly submitMs: number
}

export interface StepPoint {
  readonly batch: number
  readonly layers: number
  /** CPU ms: median over the timed steps, with their range */
  readonly hostMsPerStep: number
  readonly hostMs: Spread
  /** each timed step's host CPU ms, in order */
  readonly hostMsSteps: ReadonlyArray<number>
  /** the same span on the wall clock */
  readonly hostWallMs: Spread
  /** medians of each phase of the host time */
  readonly phases: StepPhases
  /** the most any timed step asked for */
  readonly bindGroupsPerStep: number
  readonly buffersPerStep: number
  readonly dispatchesPerStep: number
  readonly bytesWrittenPerStep: number
  /** the first step at the point: what a step asks for before anything is cached */
  readonly firstStep: GpuWorkCounts
  /** median wait for the GPU after the submit (not host time; on a busy machine, an upper bound) */
  readonly gpuMsPerStep: number
}

export interface StepModel {
  readonly preset: StepPreset
  readonly layers: number
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  readonly hidden: number
}

/** A preset's layer count and head layout (or `heads` query and KV heads) at the smallest widths the kernels take. */
export const stepModelConfig = (preset: StepPreset, layers?: number, heads?: number): ModelConfig => ({
  ...PRESETS[preset],
  numLayers: layers ?? PRESETS[preset].numLayers,
  numHeads: heads ?? PRESETS[preset].numHeads,
  numKvHeads: heads ?? PRESETS[preset].numKvHeads,
  headDim: 8,
  hiddenSize: 32,
  intermediateSize: 32,
  // room for a distinct first token of every sample under a problem (up to 4,093 each): one leaf per sample
  vocabSize: 4096,
  bosTokenId: 1,
  eosTokenIds: [2]
})

/** Blocks a node of `tokens` tokens starting at absolute position `start` takes. */
const blocksFor = (start: number, tokens: number): number => Math.ceil(((start % BLOCK_SIZE) + tokens) / BLOCK_SIZE)

/** Blocks the largest point's tree takes, with every step's token. */
const blocksNeeded = (batch: number, tokensPerSample: number): number => {
  const { prefixTokens, problems, problemTokens } = STEP_TREE
  return blocksFor(0, prefixTokens) + problems * blocksFor(prefixTokens, problemTokens) +
    batch * blocksFor(prefixTokens + problemTokens, tokensPerSample)
}

/** Deterministic token ids in [3, vocab): never BOS or EOS. */
const tokenAt = (i: number, vocab: number): number => 3 + ((i * 2654435761) >>> 0) % (vocab - 3)

/** The tree of one point; the live samples, index = row. */
export const buildStepTree = (kv: KvCache, batch: number, vocab: number): Array<SeqId> => {
  const { prefixTokens, problems, problemTokens, sampleTokens } = STEP_TREE
  const tree = kv.tree
  const prefix = Array.from({ length: prefixTokens }, (_, i) => tokenAt(i, vocab))
  const problemSeqs = Array.from({ length: Math.min(problems, batch) }, (_, p) =>
    tree.insert([...prefix, ...Array.from({ length: problemTokens }, (_, i) => tokenAt(1000 * (p + 1) + i, vocab))]).seq)
  const samples: Array<SeqId> = []
  for (let s = 0; s < batch; s++) {
    const seq = tree.fork(problemSeqs[s % problemSeqs.length]!)
    // distinct first tokens put every sample on its own leaf
    const k = Math.floor(s / problemSeqs.length)
    tree.append(seq, Array.from({ length: sampleTokens }, (_, i) => 3 + ((k * sampleTokens + i) % (vocab - 3))))
    samples.push(seq)
  }
  for (const p of problemSeqs) tree.release(p)
  return samples
}

/** The step's inputs, in arrays kept for the point: each sample's last token, written at its slot. */
export class DecodeInputs {
  readonly tokens: Uint32Array
  readonly positions: Uint32Array
  readonly slots: Uint32Array
  readonly logitRows: Uint32Array
  readonly sampling: ReadonlyArray<SamplingParams>
  readonly last: Uint32Array

  /** `samples`' last tokens are the first step's inputs */
  constructor(kv: KvCache, samples: ReadonlyArray<SeqId>) {
    const rows = samples.length
    this.tokens = new Uint32Array(rows)
    this.positions = new Uint32Array(rows)
    this.slots = new Uint32Array(2 * rows)
    this.logitRows = Uint32Array.from({ length: rows }, (_, r) => r)
    this.last = new Uint32Array(rows)
    this.sampling = Array.from({ length: rows }, (_, r) => ({ temperature: 1, topK: 0, topP: 1, seed: 0, sequence: r, step: 0 }))
    samples.forEach((seq, r) => (this.last[r] = kv.tree.tokensOf(seq).at(-1)!))
  }

  fill(kv: KvCache, samples: ReadonlyArray<SeqId>): ForwardBatch {
    for (let r = 0; r < samples.length; r++) {
      const position = kv.tree.lengthOf(samples[r]!) - 1
      const { block, slot } = kv.tree.slotOf(samples[r]!, position)
      this.tokens[r] = this.last[r]!
      this.positions[r] = position
      this.slots[2 * r] = block
      this.slots[2 * r + 1] = slot
    }
    return this
  }
}

export interface Measured {
  readonly hostMs: number
  readonly wallMs: number
  readonly phases: StepPhases
  readonly counts: GpuWorkCounts
  readonly gpuMs: number
}

export interface StepStack {
  readonly kv: KvCache
  readonly forward: Forward
  readonly attention: TreeAttention
}

const countsOf = (stack: StepStack): GpuWorkCounts => sumCounts([stack.forward.counters.snapshot(), stack.attention.counters.snapshot()])

const cpuMs = (): number => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/**
 * One decoding step: timed from planning to the submit; then, untimed, the
 * GPU's work (slept through for `sleepMs` first) and the tree's growth by the
 * sampled tokens.
 */
export const decodeStep = async (device: GPUDevice, stack: StepStack, samples: ReadonlyArray<SeqId>, inputs: DecodeInputs, sleepMs: number): Promise<Measured> => {
  const { kv, forward, attention } = stack
  await sleep(SETTLE_MS)
  const before = countsOf(stack)
  const cpu0 = cpuMs()
  const t0 = performance.now()
  const plan = planLevels(kv.tree, samples)
  const t1 = performance.now()
  const prepared = attention.prepare(plan)
  try {
    const t2 = performance.now()
    const batch = inputs.fill(kv, samples)
    const t3 = performance.now()
    const encoder = device.createCommandEncoder({ label: "bench step" })
    forward.encode(encoder, batch, (e, _layer, buffers) => attention.encode(e, prepared, buffers))
    const t4 = performance.now()
    device.queue.submit([encoder.finish()])
    const t5 = performance.now()
    const hostMs = cpuMs() - cpu0
    const counts = countsSince(countsOf(stack), before)
    await sleep(sleepMs)
    await device.queue.onSubmittedWorkDone()
    const gpuMs = performance.now() - t5
    const sampled = await readUint32(device, forward.sampled, samples.length)
    for (let r = 0; r < samples.length; r++) {
      inputs.last[r] = sampled[r]!
      // a leaf of one sample grows in place: no block copies
      kv.tree.append(samples[r]!, [sampled[r]!])
    }
    return {
      hostMs,
      wallMs: t5 - t0,
      phases: { planMs: t1 - t0, prepareMs: t2 - t1, batchMs: t3 - t2, encodeMs: t4 - t3, submitMs: t5 - t4 },
      counts,
      gpuMs
    }
  } finally {
    prepared.destroy()
  }
}

const runPoint = async (device: GPUDevice, stack: StepStack, batch: number, options: StepBenchOptions): Promise<StepPoint> => {
  const samples = buildStepTree(stack.kv, batch, stack.forward.weights.config.vocabSize)
  const inputs = new DecodeInputs(stack.kv, samples)
  try {
    const measured: Array<Measured> = []
    for (let i = 0; i < options.warmup + options.steps; i++) {
      options.onProgress?.(`batch ${batch}: step ${i + 1} of ${options.warmup + options.steps}${i < options.warmup ? " (warm-up)" : ""}`)
      measured.push(await decodeStep(device, stack, samples, inputs, 0.8 * (measured.at(-1)?.gpuMs ?? 0)))
    }
    const timed = measured.slice(options.warmup)
    const medianOf = (f: (m: Measured) => number) => spreadOf(timed.map(f)).median
    const most = (f: (c: GpuWorkCounts) => number) => Math.max(...timed.map((m) => f(m.counts)))
    const hostMs = spreadOf(timed.map((m) => m.hostMs))
    return {
      batch,
      layers: stack.forward.weights.config.numLayers,
      hostMsPerStep: hostMs.median,
      hostMs,
      hostMsSteps: timed.map((m) => m.hostMs),
      hostWallMs: spreadOf(timed.map((m) => m.wallMs)),
      phases: {
        planMs: medianOf((m) => m.phases.planMs),
        prepareMs: medianOf((m) => m.phases.prepareMs),
        batchMs: medianOf((m) => m.phases.batchMs),
        encodeMs: medianOf((m) => m.phases.encodeMs),
        submitMs: medianOf((m) => m.phases.submitMs)
      },
      bindGroupsPerStep: most((c) => c.bindGroups),
      buffersPerStep: most((c) => c.buffers),
      dispatchesPerStep: most((c) => c.dispatches),
      bytesWrittenPerStep: most((c) => c.bytesWritten),
      firstStep: measured[0]!.counts,
      gpuMsPerStep: medianOf((m) => m.gpuMs)
    }
  } finally {
    for (const seq of samples) stack.kv.tree.release(seq)
    stack.kv.tree.evict(stack.kv.numBlocks)
  }
}

/** The stack the engine builds (KV cache, Hydragen attention, forward) for `maxBatch` samples of `steps` steps. */
export const createStepStack = async (
  device: GPUDevice, config: ModelConfig, maxBatch: number, steps: number
): Promise<StepStack & { destroy(): void }> => {
  const model = await loadModel(device, { kind: "synthetic", model: config, seed: 0 })
  const owned: Array<{ destroy(): void }> = [model.weights]
  try {
    const tokensPerSample = STEP_TREE.sampleTokens + steps
    const kv = await KvCache.create(device, config, { blockSize: BLOCK_SIZE, numBlocks: blocksNeeded(maxBatch, tokensPerSample), kvDtype: "f16" })
    owned.push(kv)
    const attention = await createTreeAttention(device, {
      heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, blockSize: BLOCK_SIZE, poolShards: kv.shards, kvDtype: kv.kvDtype
    })
    owned.push(attention)
    const forward = await Forward.create(device, model.weights, {
      maxRows: maxBatch, maxLogitRows: maxBatch, kvPools: kv.pools, blockSize: BLOCK_SIZE, numBlocks: kv.numBlocks, poolShards: kv.shards, kvDtype: kv.kvDtype
    })
    owned.push(forward)
    return { kv, attention, forward, destroy: () => owned.reverse().forEach((o) => o.destroy()) }
  } catch (e) {
    for (const o of owned.reverse()) o.destroy()
    throw e
  }
}

export const stepModelOf = (config: ModelConfig, preset: StepPreset): StepModel => ({
  preset,
  layers: config.numLayers,
  heads: config.numHeads,
  kvHeads: config.numKvHeads,
  headDim: config.headDim,
  hidden: config.hiddenSize
})

export const runStepBench = async (device: GPUDevice, options: StepBenchOptions): Promise<ReadonlyArray<StepPoint>> => {
  const config = stepModelConfig(options.preset, options.layers, options.heads)
  const stack = await createStepStack(device, config, Math.max(...options.batches), options.warmup + options.steps)
  try {
    const points: Array<StepPoint> = []
    for (const batch of options.batches) points.push(await runPoint(device, stack, batch, options))
    return points
  } finally {
    stack.destroy()
  }
}
