/**
 * What `bench step` runs a step on: the stack the engine builds (the KV
 * cache with its trie, Hydragen attention, the forward), the three-level tree
 * of a sampling run (a few-shot prefix, problems under it, the samples under
 * those, each on its own leaf), and the step's inputs in arrays kept across
 * steps.
 *
 * The model has a preset's layer count and head layout at the smallest
 * widths (head dim 8, hidden 32), so that on a software adapter the GPU work
 * stays small. None of the host work depends on the widths, nor on the
 * number of heads (it sets how many workgroups a dispatch has, not how many
 * dispatches or bind groups there are), so the heads may be lowered where
 * the GPU's work would take too long: a software adapter takes minutes for a
 * step of batch 1,024 at 40 heads and 40 layers.
 */
import {
  createTreeAttention, layerProjections, type SamplingParams, type TreeAttention, tuneLevelTile, tuneMatmul, type TuneOptions
} from "@canopy/kernels"
import { DecodeBatchBuilder, type DecodeRow, Forward, KvCache, loadModel, type ModelConfig, PRESETS } from "@canopy/runtime"
import { type LevelPlan, LevelPlanner, type PrefixTree, type SeqId } from "@canopy/tree-cache"

export type StepPreset = "codellama-7b" | "codellama-13b"

/** The three-level tree of every point. */
export const STEP_TREE = { prefixTokens: 64, problems: 8, problemTokens: 32, sampleTokens: 1 } as const

const BLOCK_SIZE = 16

/** room for a distinct first token (3 and up) of every sample under a problem: one leaf per sample */
const STEP_VOCAB = 4096

/** The most samples the tree holds on leaves of their own. */
export const MAX_STEP_BATCH = STEP_TREE.problems * (STEP_VOCAB - 3)

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
  vocabSize: STEP_VOCAB,
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

/**
 * What the scheduler hands the engine's step every decoding step, for the
 * samples of a point: each sample's newest token (its KV not written yet) and
 * its sampling; the step builds the forward's inputs from them with the
 * engine's own builder (StepStack.inputs).
 */
export class DecodeRows {
  /** each sample's newest token, index = row */
  readonly last: Uint32Array
  private readonly sampling: ReadonlyArray<SamplingParams>

  /** `samples`' last tokens are the first step's inputs */
  constructor(kv: KvCache, private readonly samples: ReadonlyArray<SeqId>) {
    this.last = Uint32Array.from(samples, (seq) => kv.tree.tokensOf(seq).at(-1)!)
    this.sampling = samples.map((_, r) => ({ temperature: 1, topK: 0, topP: 1, seed: 0, sequence: r, step: 0 }))
  }

  /** The next step's rows. */
  rows(kv: KvCache): Array<DecodeRow> {
    return this.samples.map((seq, r) => ({ seq, token: this.last[r]!, written: kv.tree.lengthOf(seq) - 1, sampling: this.sampling[r]! }))
  }
}

export interface StepStack {
  readonly kv: KvCache
  /** the engine's builder of a decode step's forward inputs, and its planner (a LevelPlanner) */
  readonly inputs: DecodeBatchBuilder
  readonly planner: { plan(tree: PrefixTree, sequences: ArrayLike<SeqId>): LevelPlan }
  readonly forward: Forward
  readonly attention: TreeAttention
  /** the same attention with the merge as a pass of its own (TreeAttentionOptions.fuseMerge false), where asked for */
  readonly separateMerge?: TreeAttention
  /**
   * The same forward with RoPE and the KV append as a kernel of their own
   * (ForwardOptions.fuseRopeAppend false), where asked for, with an attention
   * of its own: the attention's bind groups bind the forward's buffers, and
   * one attention alternating between two forwards would make them anew.
   */
  readonly separateRope?: { readonly forward: Forward; readonly attention: TreeAttention }
}

/** The fusions a stack also builds apart, for the step benchmark to alternate with. */
export interface SeparateParts {
  readonly merge?: boolean
  readonly rope?: boolean
}

/** The stack the engine builds (KV cache, Hydragen attention, forward, tuned alike) for `maxBatch` samples of `steps` steps. */
export const createStepStack = async (
  device: GPUDevice, config: ModelConfig, maxBatch: number, steps: number, tune: false | TuneOptions = {}, apart: SeparateParts = {}
): Promise<StepStack & { destroy(): void }> => {
  const model = await loadModel(device, { kind: "synthetic", model: config, seed: 0 })
  const owned: Array<{ destroy(): void }> = [model.weights]
  try {
    const tokensPerSample = STEP_TREE.sampleTokens + steps
    const kv = await KvCache.create(device, config, { blockSize: BLOCK_SIZE, numBlocks: blocksNeeded(maxBatch, tokensPerSample), kvDtype: "f16" })
    owned.push(kv)
    const shape = { heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, blockSize: BLOCK_SIZE, poolShards: kv.shards, kvDtype: kv.kvDtype }
    const tuneOptions: TuneOptions = tune === false ? { enabled: false } : tune
    const levelTile = await tuneLevelTile(device, shape, tuneOptions)
    const matmul = await tuneMatmul(device, { weights: model.weights.weightType, projections: layerProjections(config) }, tuneOptions)
    const attention = await createTreeAttention(device, { ...shape, levelTile: levelTile.value })
    owned.push(attention)
    const separateMerge = apart.merge === true ? await createTreeAttention(device, { ...shape, levelTile: levelTile.value, fuseMerge: false }) : undefined
    if (separateMerge !== undefined) owned.push(separateMerge)
    const forwardOptions = {
      maxRows: maxBatch, maxLogitRows: maxBatch, kvPools: kv.pools, blockSize: BLOCK_SIZE, numBlocks: kv.numBlocks, poolShards: kv.shards, kvDtype: kv.kvDtype,
      matmul: matmul.choice
    }
    const forward = await Forward.create(device, model.weights, forwardOptions)
    owned.push(forward)
    let separateRope: StepStack["separateRope"]
    if (apart.rope === true) {
      const ropeAttention = await createTreeAttention(device, { ...shape, levelTile: levelTile.value })
      owned.push(ropeAttention)
      const ropeForward = await Forward.create(device, model.weights, { ...forwardOptions, fuseRopeAppend: false })
      owned.push(ropeForward)
      separateRope = { forward: ropeForward, attention: ropeAttention }
    }
    return {
      kv, inputs: new DecodeBatchBuilder(kv.tree), planner: new LevelPlanner(), attention, forward,
      ...(separateMerge === undefined ? {} : { separateMerge }), ...(separateRope === undefined ? {} : { separateRope }),
      destroy: () => owned.reverse().forEach((o) => o.destroy())
    }
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

