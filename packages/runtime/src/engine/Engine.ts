/**
 * The engine: prompt trees in, sampled completions out, for any number of
 * requests at once.
 *
 *   1. Each sampled node's prompt is tokenized whole and placed in the prefix
 *      trie; only tokens not already cached are prefilled, so a prompt shared
 *      by many samples, or by several requests, is prefilled once.
 *   2. Every live sample of every request decodes in one batch per step (the
 *      scheduler): per layer the level attention over the tree's shared nodes,
 *      then the merge; the step's only CPU round trip is reading back the
 *      sampled token ids. Samples join as places and KV blocks free up and
 *      leave as they finish; when blocks run out the youngest are preempted
 *      and recomputed later.
 *   3. Finished samples release their path; shared nodes stay cached for
 *      reuse until memory is needed (LRU). A request that can never fit is
 *      refused before any work.
 */
import {
  capabilitiesOf, createPagedDecode, createTreeAttention, defaultTuneCache, ENGINE_MATRIX_PROBE, layerProjections, type LevelTile, levelTileFits,
  MATMUL_CANDIDATES, MATRIX_MATMUL, matrixMatmulProblem, matrixProbeStatus, type MatmulTuning, type TreeAttention, type TuneChoice, tuneLevelTile,
  tuneMatmul, type TuneOptions, type WeightType, weightStorageFor
} from "@canopy/kernels"
import { Forward } from "../model/forward.ts"
import type { LoadedModel } from "../model/model.ts"
import { checkFits, waveSize } from "./capacity.ts"
import { InvalidEngineOptions } from "./errors.ts"
import { KvCache } from "./KvCache.ts"
import type { EngineOptions, GenerateEvents, GenerateRequest, GenerateResult } from "./request.ts"
import { RequestState } from "./requestState.ts"
import { resolveSampling } from "./sampling.ts"
import { Scheduler } from "./scheduler.ts"
import { StepRunner } from "./step.ts"
import { tokenizeTree } from "./tokenize.ts"

export * from "./request.ts"

/** The kernel variants an engine runs, as the tuner chose them on its device (or the defaults, tuning off). */
export interface EngineTuning {
  readonly levelTile: TuneChoice<LevelTile>
  readonly matmul: MatmulTuning
}

const tuneOptionsOf = (tune: EngineOptions["tune"]): TuneOptions =>
  tune === false ? { enabled: false } : tune === true || tune === undefined ? {} : tune

export class TreeEngine {
  private namespaces = 0

  private constructor(
    readonly model: LoadedModel,
    readonly kv: KvCache,
    private readonly forward: Forward,
    private readonly attention: { readonly hydragen: TreeAttention; readonly baseline: TreeAttention },
    private readonly scheduler: Scheduler,
    readonly maxBatch: number,
    readonly maxPrefillRows: number,
    readonly tuning: EngineTuning
  ) {}

  static async create(device: GPUDevice, model: LoadedModel, options: EngineOptions = {}): Promise<TreeEngine> {
    const c = model.config
    const blockSize = options.blockSize ?? 16
    const maxBatch = options.maxBatch ?? 1024
    const maxPrefillRows = options.maxPrefillRows ?? 256
    checkRows(device, c, "maxBatch", maxBatch)
    checkRows(device, c, "maxPrefillRows", maxPrefillRows)
    checkPinnedKernels(device, c.headDim, model.weights.weightType, options.kernels, tuneOptionsOf(options.tune))
    const kv = await KvCache.create(device, c, {
      blockSize,
      ...(options.kvBlocks !== undefined ? { numBlocks: options.kvBlocks } : {}),
      ...(options.kvMemoryBytes !== undefined ? { memoryBytes: options.kvMemoryBytes } : {}),
      ...(options.kvShards !== undefined ? { shards: options.kvShards } : {}),
      ...(options.kvDtype !== undefined ? { kvDtype: options.kvDtype } : {})
    })
    const shape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, blockSize, poolShards: kv.shards, kvDtype: kv.kvDtype }
    const owned: Array<{ destroy(): void }> = [kv]
    try {
      const tune = tuneOptionsOf(options.tune)
      // a pinned kernel is the tuner's only candidate: chosen as it is, nothing timed or cached
      const { levelTile, matmul } = options.kernels ?? {}
      const tuning: EngineTuning = {
        levelTile: await tuneLevelTile(device, shape, { ...tune, ...(levelTile !== undefined ? { tiles: [levelTile] } : {}) }),
        matmul: await tuneMatmul(device, { weights: model.weights.weightType, projections: layerProjections(c) }, {
          ...tune,
          ...(matmul !== undefined ? { decodeCandidates: [matmul.decode], prefillCandidates: [matmul.prefill] } : {})
        })
      }
      const hydragen = await createTreeAttention(device, { ...shape, levelTile: tuning.levelTile.value })
      owned.push(hydragen)
      const baseline = await createPagedDecode(device, shape)
      owned.push(baseline)
      const forward = await Forward.create(device, model.weights, {
        maxRows: Math.max(maxBatch, maxPrefillRows),
        maxLogitRows: maxBatch,
        kvPools: kv.pools,
        blockSize,
        numBlocks: kv.numBlocks,
        poolShards: kv.shards,
        kvDtype: kv.kvDtype,
        matmul: tuning.matmul.choice
      })
      const attention = { hydragen, baseline }
      const step = new StepRunner(device, kv, forward, attention)
      const scheduler = new Scheduler(kv, step, c.vocabSize, maxBatch, maxPrefillRows, options.overlap ?? true)
      return new TreeEngine(model, kv, forward, attention, scheduler, maxBatch, maxPrefillRows, tuning)
    } catch (e) {
      for (const o of owned) o.destroy()
      throw e
    }
  }

  /**
   * Drops every cached prefix no running request holds, returning its KV blocks
   * to the pool (the next request prefills from scratch). Returns the blocks freed.
   */
  clearCache(): number {
    return this.kv.tree.evict(this.kv.numBlocks)
  }

  /** Fails every request still running, then frees the GPU resources. */
  destroy(): void {
    this.scheduler.shutdown(new Error("the engine was destroyed"))
    this.forward.destroy()
    this.attention.hydragen.destroy()
    this.attention.baseline.destroy()
    this.kv.destroy()
  }

  /**
   * Runs a request to completion, batched with whatever else is running;
   * events report progress and stream tokens. Bad input throws before any
   * work. An aborted `signal` ends it before the next step (rejecting with the
   * signal's reason), with every sequence released; other requests go on.
   *
   * Fault safety rests on one rule: the trie keeps only tokens whose KV is
   * written (see the scheduler for how each step keeps it).
   */
  generate(request: GenerateRequest, events: GenerateEvents = {}, signal?: AbortSignal): Promise<GenerateResult> {
    try {
      const c = this.model.config
      const sampling = resolveSampling(request.sampling ?? {}, c.vocabSize)
      const sharing = request.sharing ?? "tree"
      const groups = tokenizeTree(this.model, request.tree, sampling)
      checkFits(groups, this.kv.numBlocks, this.kv.blockSize)
      if (signal?.aborted === true) throw signal.reason
      const namespaceBase = this.namespaces
      if (sharing === "single-level") this.namespaces += groups.length
      return new Promise<GenerateResult>((resolve, reject) => {
        const state = new RequestState(groups, {
          attention: request.attention ?? "hydragen",
          sharing,
          waves: request.scheduling === "waves",
          width: waveSize(groups, this.kv.numBlocks, this.kv.blockSize, this.maxBatch, sharing),
          namespaceBase,
          eosIds: [...c.eosTokenIds, ...this.model.tokenizer.eosIds],
          blockCapacity: this.kv.numBlocks,
          blockSize: this.kv.blockSize
        }, events, signal, this.model.tokenizer, { resolve, reject })
        this.scheduler.submit(state)
      })
    } catch (e) {
      return Promise.reject(e)
    }
  }
}

/** The most rows one forward may hold: a batch this large is far past any GPU's memory for activations. */
export const MAX_BATCH_ROWS = 65_536

/**
 * A pinned kernel the device cannot run is refused before anything is
 * allocated; so is the matrix matmul where its probe has not passed on this
 * adapter (building it untried may abort the process: tune/matrixProbe.ts).
 */
const checkPinnedKernels = (
  device: GPUDevice, headDim: number, weights: WeightType, kernels: EngineOptions["kernels"], tune: TuneOptions
): void => {
  const { levelTile, matmul } = kernels ?? {}
  if (levelTile !== undefined && !levelTileFits(headDim, levelTile, device.limits)) {
    throw new InvalidEngineOptions({
      field: "kernels.levelTile",
      problem: levelTile.variant === "matrix"
        ? `${JSON.stringify(levelTile)}: a matrix tile is the tuner's pick only, where its probe (canopy probe) passed on this adapter`
        : `${JSON.stringify(levelTile)} does not fit this device at head dim ${headDim}`
    })
  }
  if (matmul === undefined) return
  for (const regime of ["decode", "prefill"] as const) {
    const names: ReadonlyArray<string> = regime === "prefill" ? [...MATMUL_CANDIDATES.prefill, MATRIX_MATMUL] : MATMUL_CANDIDATES.decode
    if (!names.includes(matmul[regime])) {
      throw new InvalidEngineOptions({
        field: `kernels.matmul.${regime}`, problem: `must be one of ${names.join(", ")}, got ${JSON.stringify(matmul[regime])}`
      })
    }
  }
  if (matmul.prefill !== MATRIX_MATMUL) return
  const problem = matrixMatmulProblem(device, weightStorageFor(weights, capabilitiesOf(device))) ??
    (matrixProbeStatus(tune.cache ?? defaultTuneCache(), device, tune.version) === "ok"
      ? undefined
      : `its probe (${ENGINE_MATRIX_PROBE}) has not passed on this adapter: run \`canopy probe\` first`)
  if (problem !== undefined) throw new InvalidEngineOptions({ field: "kernels.matmul.prefill", problem: `the matrix kernel cannot run here: ${problem}` })
}

/** A row limit must be an integer the forward's scratch buffers can hold within one storage binding. */
const checkRows = (device: GPUDevice, c: LoadedModel["config"], field: string, rows: number): void => {
  if (!Number.isInteger(rows) || rows < 1 || rows > MAX_BATCH_ROWS) {
    throw new InvalidEngineOptions({ field, problem: `must be an integer from 1 to ${MAX_BATCH_ROWS}, got ${rows}` })
  }
  // The widest per-row scratch: the gate/up projections, or the logits.
  const rowBytes = 4 * Math.max(2 * c.intermediateSize, c.vocabSize, c.numHeads * c.headDim)
  const binding = device.limits.maxStorageBufferBindingSize
  if (rows * rowBytes > binding) {
    throw new InvalidEngineOptions({
      field,
      problem: `${rows} rows need ${rows * rowBytes} bytes of scratch per buffer, more than one storage binding (${binding} bytes) on this device; at most ${Math.floor(binding / rowBytes)}`
    })
  }
}
