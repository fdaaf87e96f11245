/**
 * Host side of tree attention (Hydragen) and of the per-sequence paged
 * decoding baseline. Plain TypeScript: `prepare` once per plan (schedules it
 * and writes it into the object's plan buffers), `encode` once per layer
 * (records the dispatches, no CPU round trip, in a compute pass of its own;
 * `encodeInPass` into the caller's, so a forward step stays one pass),
 * `destroy` frees what each object created.
 *
 * The plan buffers and the bind groups over them live as long as the object:
 * buffers are sized by the largest plan so far and rewritten in place each
 * step, and a bind group is made again only when a buffer it binds was
 * replaced (a larger plan), another pool or output is bound, or (the merge's)
 * the number of sequences changes. A steady decoding step therefore creates
 * no GPU object; `counters` counts what each step does ask for.
 */
import type { LevelPlan } from "@canopy/tree-cache"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { uniformBuffer } from "../gpu/resources.ts"
import { GpuWorkCounters } from "../gpu/workCounters.ts"
import { bindGroup, CachedBindGroups } from "./cachedBindGroups.ts"
import { decodeAttentionWgsl } from "./decodeAttention.wgsl.ts"
import { checkKvPool, kvHeadDimProblem, type KvDtype, kvStorageFor, type KvStorage } from "./kvStorage.ts"
import { levelAttentionWgsl } from "./levelAttention.wgsl.ts"
import {
  levelAttentionMatrixWgsl, MATRIX_LEVEL_ROW_MATRICES, matrixLevelProblem, matrixLevelRowMatrices, matrixLevelTile
} from "./levelAttentionMatrix.wgsl.ts"
import { deviceMatrixUnits, type MatrixUnits } from "../subgroupMatrix/matrixOps.ts"
import { MERGE_STATES_WGSL } from "./mergeStates.wgsl.ts"
import { cachedPipeline } from "./pipelines.ts"
import { attentionScale, type AttentionShape } from "./reference.ts"
import { GrowingBuffer } from "./planBuffers.ts"
import { AttentionScheduler, itemGrid } from "./schedule.ts"
import { ATTENTION_PARAM_WORDS, FUSED_DECODE_STORAGE_BUFFERS } from "./workItem.wgsl.ts"
import {
  chooseDecodeTile, chooseLevelTile, type DecodeTile, LEVEL_VARIANTS, type LevelTile, levelTileFits, type LevelVariant, levelVariantOf
} from "./tiling.ts"

export interface TreeAttentionConfig extends AttentionShape {
  /** tokens per KV block of the pools (must equal the plans' blockSize) */
  readonly blockSize: number
  /**
   * Shards of each pool buffer (default 1; must divide kvHeads). Shard s holds
   * KV heads [s·kvHeads/S, (s+1)·kvHeads/S) as [block][slot][kvHeads/S][headDim],
   * at byte offset s·size/S: pools larger than one storage binding (2 GiB on
   * many GPUs) are bound a shard at a time.
   */
  readonly poolShards?: number
  /**
   * Element type of the K/V pools (default "f32"): "f16" pools hold half the
   * bytes, [block][slot][kvHeads][headDim] f16 (headDim even), read through
   * native f16 where the device has shader-f16 and as u32 words holding two
   * f16 each elsewhere. The arithmetic is f32 either way.
   */
  readonly kvDtype?: KvDtype
}

export interface TreeAttentionOptions extends TreeAttentionConfig {
  /** workgroups one attention pass aims for when splitting long nodes into chunks (default 1024) */
  readonly targetWorkgroups?: number
  /** shortest KV chunk (default 64 tokens) */
  readonly minChunkTokens?: number
  /**
   * Nodes attended by at most this many sequences run on the decode kernel
   * (default 1: suffix nodes of single sequences); the rest on the level kernel.
   */
  readonly decodeMaxEntries?: number
  /** how the level kernel spreads a tile over its threads (tiling.ts LevelVariant; default DEFAULT_LEVEL_VARIANT where it fits) */
  readonly levelVariant?: LevelVariant
  /**
   * The level kernel's tile itself, as a tuner picks it among the variants'
   * tiles (flash2LevelTiles, …); it must fit the device (levelTileFits).
   * Default: the first tile of `levelVariant` that fits. A "matrix" tile
   * must be a matrixLevelTile of the matrix units, on an f16 KV cache.
   */
  readonly levelTile?: LevelTile
  /** the matrix units a "matrix" level tile is written for (default: the device's builtins, where it has them) */
  readonly matrixUnits?: MatrixUnits | undefined
  /**
   * What the device can do, as the kernels should assume (default: the
   * device's own record, capabilitiesOf). With shaderF16 false, f16 pools are
   * read as packed words even where native f16 exists (the same bytes).
   */
  readonly capabilities?: GpuCapabilities
  /**
   * Whether a plan whose sequences each end on one decode item (the steady
   * state of sampling) has those items merge the sequence's states, with no
   * merge pass (schedule.ts). Default: where the device binds
   * FUSED_DECODE_STORAGE_BUFFERS storage buffers to a shader (true is
   * refused elsewhere).
   */
  readonly fuseMerge?: boolean
}

/**
 * GPU buffers of one call. q `[rows][heads][headDim]` f32, pools
 * `[numBlocks][blockSize][kvHeads][headDim]` of the config's kvDtype (in shards), out `[rows][heads][headDim]`
 * f32, lse `[rows][heads]` f32 (natural log; −∞ and out = 0 for an empty path).
 */
export interface AttentionBuffers {
  readonly q: GPUBuffer
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  readonly out: GPUBuffer
  readonly lse: GPUBuffer
}

/**
 * A plan written into one attention object's buffers; encode it for every
 * layer of a step, submit, then destroy it (a cheap release) before
 * preparing the next: the object holds one plan at a time.
 */
export interface PreparedAttention {
  readonly numSequences: number
  readonly levelWorkgroups: number
  readonly decodeWorkgroups: number
  readonly partials: number
  readonly chunkTokens: number
  /** the decode items merge each sequence's states: no merge pass (TreeAttentionOptions.fuseMerge) */
  readonly mergeFused: boolean
  destroy(): void
}

export interface AttentionKernels {
  readonly config: TreeAttentionConfig
  /** how the kernels read the pools (from kvDtype and the device's capabilities) */
  readonly kvStorage: KvStorage
  /** null where this object never uses the level kernel (the baseline) */
  readonly levelTile: LevelTile | null
  readonly decodeTile: DecodeTile
  /** dispatches, bind groups and buffers this object created, bytes it wrote: cumulative */
  readonly counters: GpuWorkCounters
  /**
   * Schedules the plan and writes it into the object's buffers, growing them
   * if needed. Throws while an earlier prepared plan is not destroyed: its
   * encoded work would read this plan. Growing replaces buffers that earlier
   * encodes used: submit encoded work first.
   */
  prepare(plan: LevelPlan): PreparedAttention
  /**
   * Records into one compute pass: one level-kernel dispatch covering the
   * shared nodes of every level, one decode-kernel dispatch covering the
   * single-sequence nodes, one merge (none where the decode items merge). The levels are independent (each writes
   * its own partial slots), so they share dispatches instead of one per level.
   */
  encode(encoder: GPUCommandEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void
  /** The same dispatches, into a compute pass the caller has open (the forward's, so a step is one pass). */
  encodeInPass(pass: GPUComputePassEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void
  destroy(): void
}

export type TreeAttention = AttentionKernels
export type PagedDecode = AttentionKernels

interface Prepared extends PreparedAttention {
  readonly owner: object
  /** the schedule's figures the encode needs */
  readonly tileGrid: readonly [number, number]
  readonly decodeGrid: readonly [number, number]
  readonly mergeGrid: readonly [number, number]
  destroyed: boolean
}

/** Per KV pool (one per layer in the engine): the level and decode kernels' bind groups, one per pool shard. */
interface PoolBindGroups {
  readonly level: CachedBindGroups
  readonly decode: CachedBindGroups
}

const dispatchGrid = (pass: GPUComputePassEncoder, grid: readonly [number, number], depth: number, counters: GpuWorkCounters): void => {
  pass.dispatchWorkgroups(grid[0], grid[1], depth)
  counters.dispatches++
}

/** Bytes of one shard of a pool buffer of `shards` shards (see TreeAttentionConfig.poolShards). */
export const poolShardBytes = (pool: GPUBuffer, shards: number): number => {
  const bytes = pool.size / shards
  if (shards > 1 && (!Number.isInteger(bytes) || bytes % 256 !== 0)) {
    throw new RangeError(`a pool of ${shards} shards must be a multiple of ${256 * shards} bytes, got ${pool.size}`)
  }
  return shards === 1 ? pool.size : bytes
}

const validate = (config: TreeAttentionConfig): void => {
  const { heads, kvHeads, headDim, blockSize } = config
  const problems: Array<string> = []
  if (!(Number.isInteger(kvHeads) && kvHeads >= 1 && Number.isInteger(heads) && heads % kvHeads === 0)) {
    problems.push(`heads (${heads}) must be a positive multiple of kvHeads (${kvHeads})`)
  }
  if (!(Number.isInteger(headDim) && headDim >= 8 && headDim % 8 === 0)) problems.push(`headDim (${headDim}) must be a multiple of 8`)
  if (!(Number.isInteger(blockSize) && blockSize >= 1)) problems.push(`blockSize (${blockSize}) must be a positive integer`)
  const shards = config.poolShards ?? 1
  if (!(Number.isInteger(shards) && shards >= 1 && kvHeads % shards === 0)) {
    problems.push(`poolShards (${shards}) must divide kvHeads (${kvHeads})`)
  }
  const kvDtype = config.kvDtype ?? "f32"
  if (kvDtype !== "f32" && kvDtype !== "f16") problems.push(`kvDtype (${String(kvDtype)}) must be "f32" or "f16"`)
  else {
    const headDimProblem = kvHeadDimProblem(kvDtype, headDim)
    if (headDimProblem !== undefined) problems.push(headDimProblem)
  }
  if (problems.length > 0) throw new RangeError(`attention: ${problems.join("; ")}`)
}

interface Pipelines {
  /** null where the object never uses the level kernel (the baseline) */
  readonly level: GPUComputePipeline | null
  readonly decode: GPUComputePipeline
  readonly merge: GPUComputePipeline
}

/** The buffers an object keeps for its plans (see the file's comment). */
const planBuffers = (device: GPUDevice, counters: GpuWorkCounters) => {
  const buffer = (label: string) => new GrowingBuffer(device, label, counters)
  return {
    blockIndices: buffer("attention block indices"),
    entries: buffer("attention entries"),
    tileItems: buffer("level attention items"),
    decodeItems: buffer("decode attention items"),
    seqPartialIndptr: buffer("attention partial indptr"),
    seqPartials: buffer("attention partial slots"),
    partialO: buffer("attention partial o"),
    partialLse: buffer("attention partial lse")
  }
}

class Attention implements AttentionKernels {
  readonly counters = new GpuWorkCounters()
  private readonly scheduler: AttentionScheduler
  private readonly plan: ReturnType<typeof planBuffers>
  /** one parameter block per pool shard: its first KV head and head count */
  private readonly shardParams: ReadonlyArray<GPUBuffer>
  private readonly mergeParams: GPUBuffer
  private readonly poolGroups = new WeakMap<GPUBuffer, PoolBindGroups>()
  private readonly mergeGroups = new CachedBindGroups(this.counters)
  /** what the level or decode dispatch, and the merge, bind: refilled for each lookup, so a step allocates none (the caches copy them) */
  private readonly attendKey = new Array<GPUBuffer>(8)
  private readonly fusedKey = new Array<GPUBuffer>(10)
  private readonly mergeKey = new Array<GPUBuffer>(6)
  private current: Prepared | null = null
  private destroyed = false

  constructor(
    private readonly device: GPUDevice,
    readonly config: Required<TreeAttentionConfig>,
    readonly kvStorage: KvStorage,
    readonly levelTile: LevelTile | null,
    readonly decodeTile: DecodeTile,
    private readonly pipelines: Pipelines,
    options: TreeAttentionOptions,
    decodeMaxEntries: number,
    private readonly fuseMerge: boolean
  ) {
    const { heads, kvHeads, blockSize, poolShards, headDim } = config
    const group = heads / kvHeads
    this.scheduler = new AttentionScheduler({
      group,
      kvHeads,
      tileRows: levelTile?.rows ?? 1,
      decodeMaxEntries,
      targetWorkgroups: options.targetWorkgroups ?? 1024,
      minChunkTokens: options.minChunkTokens ?? 64,
      fuseMerge
    })
    const poolHeads = kvHeads / poolShards
    this.shardParams = Array.from({ length: poolShards }, (_, s) => {
      const words = new Uint32Array(ATTENTION_PARAM_WORDS)
      words.set([heads, kvHeads, group, blockSize])
      new Float32Array(words.buffer).set([config.scale], 4)
      words.set([poolHeads, s * poolHeads], 5)
      return uniformBuffer(device, `attention params, pool shard ${s}`, words)
    })
    this.mergeParams = uniformBuffer(device, "merge params", Uint32Array.of(heads, headDim / 4))
    this.counters.buffers += poolShards + 1
    this.counters.bytesWritten += poolShards * ATTENTION_PARAM_WORDS * 4 + 8
    this.plan = planBuffers(device, this.counters)
  }

  prepare(levelPlan: LevelPlan): PreparedAttention {
    if (this.destroyed) throw new Error("attention: prepare after destroy")
    if (this.current !== null) {
      throw new Error("attention: a prepared plan is still in use; destroy it (after submitting its work) before preparing the next")
    }
    if (levelPlan.blockSize !== this.config.blockSize) {
      throw new RangeError(`attention: plan blockSize ${levelPlan.blockSize} differs from the pools' ${this.config.blockSize}`)
    }
    const schedule = this.scheduler.schedule(levelPlan)
    const { plan } = this
    plan.blockIndices.write(schedule.blockIndices)
    plan.entries.write(schedule.entries)
    plan.tileItems.write(schedule.tileItems.words)
    plan.decodeItems.write(schedule.decodeItems.words)
    // a fused merge reads the slots from blockIndices
    if (!schedule.mergeFused) {
      plan.seqPartialIndptr.write(schedule.seqPartialIndptr)
      plan.seqPartials.write(schedule.seqPartials)
    }
    // and the spare slot the decode kernel's padding items write
    const { heads, headDim, kvHeads } = this.config
    const slots = schedule.numPartials + 1
    plan.partialO.reserve(slots * heads * headDim * 4)
    plan.partialLse.reserve(slots * heads * 4)
    const prepared: Prepared = {
      owner: this,
      numSequences: schedule.numSequences,
      levelWorkgroups: schedule.tileItems.count * kvHeads,
      decodeWorkgroups: schedule.decodeItems.count * kvHeads,
      partials: schedule.numPartials,
      chunkTokens: schedule.chunkTokens,
      mergeFused: schedule.mergeFused,
      tileGrid: schedule.tileItems.grid,
      decodeGrid: schedule.decodeItems.grid,
      mergeGrid: itemGrid(schedule.numSequences),
      destroyed: false,
      destroy: () => {
        prepared.destroyed = true
        if (this.current === prepared) this.current = null
      }
    }
    this.current = prepared
    return prepared
  }

  encode(encoder: GPUCommandEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void {
    const pass = encoder.beginComputePass({ label: "tree attention" })
    this.encodeInPass(pass, prepared, buffers)
    pass.end()
  }

  encodeInPass(pass: GPUComputePassEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void {
    const p = prepared as Prepared
    if (p.owner !== this) throw new Error("attention: prepared by another attention object")
    if (p.destroyed) throw new Error("attention: prepared plan was destroyed")
    checkKvPool(buffers.kPool, this.config.kvDtype, "attention")
    checkKvPool(buffers.vPool, this.config.kvDtype, "attention")
    const groups = this.groupsOf(buffers.kPool)
    const { level, decode } = this.pipelines
    if (p.levelWorkgroups > 0 && level !== null) this.attend(pass, level, groups.level, this.plan.tileItems.buffer, p.tileGrid, buffers, false)
    if (p.decodeWorkgroups > 0) this.attend(pass, decode, groups.decode, this.plan.decodeItems.buffer, p.decodeGrid, buffers, this.fuseMerge)
    if (p.numSequences > 0 && !p.mergeFused) this.merge(pass, p, buffers)
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.current?.destroy()
    for (const b of Object.values(this.plan)) b.destroy()
    for (const params of this.shardParams) params.destroy()
    this.mergeParams.destroy()
  }

  private groupsOf(pool: GPUBuffer): PoolBindGroups {
    let groups = this.poolGroups.get(pool)
    if (groups === undefined) {
      groups = { level: new CachedBindGroups(this.counters), decode: new CachedBindGroups(this.counters) }
      this.poolGroups.set(pool, groups)
    }
    return groups
  }

  /** One kernel over its items, a dispatch per pool shard; `outputs`: it binds the call's out and lse too (the fused merge). */
  private attend(
    pass: GPUComputePassEncoder, pipeline: GPUComputePipeline, cache: CachedBindGroups, items: GPUBuffer,
    grid: readonly [number, number], buffers: AttentionBuffers, outputs: boolean
  ): void {
    const { q, kPool, vPool } = buffers
    const { blockIndices, entries, partialO, partialLse } = this.plan
    const key = outputs ? this.fusedKey : this.attendKey
    key[0] = items
    key[1] = blockIndices.buffer
    key[2] = entries.buffer
    key[3] = q
    key[4] = kPool
    key[5] = vPool
    key[6] = partialO.buffer
    key[7] = partialLse.buffer
    if (outputs) {
      key[8] = buffers.out
      key[9] = buffers.lse
    }
    const groups = cache.get(key, 0, () => {
      const shardBytes = poolShardBytes(kPool, this.config.poolShards)
      return this.shardParams.map((params, s) =>
        bindGroup(this.device, pipeline, [
          [items], [blockIndices.buffer], [entries.buffer], [q],
          [kPool, shardBytes, s * shardBytes], [vPool, shardBytes, s * shardBytes],
          [partialO.buffer], [partialLse.buffer], [params], ...(outputs ? [[buffers.out], [buffers.lse]] as const : [])
        ])
      )
    })
    const poolHeads = this.config.kvHeads / this.config.poolShards
    pass.setPipeline(pipeline)
    for (let s = 0; s < groups.length; s++) {
      pass.setBindGroup(0, groups[s]!)
      dispatchGrid(pass, grid, poolHeads, this.counters)
    }
  }

  /** Each sequence's partial states into `out` and `lse`. */
  private merge(pass: GPUComputePassEncoder, prepared: Prepared, buffers: AttentionBuffers): void {
    const { seqPartialIndptr, seqPartials, partialO, partialLse } = this.plan
    const pipeline = this.pipelines.merge
    const indptrBytes = (prepared.numSequences + 1) * 4
    const key = this.mergeKey
    key[0] = seqPartialIndptr.buffer
    key[1] = seqPartials.buffer
    key[2] = partialO.buffer
    key[3] = partialLse.buffer
    key[4] = buffers.out
    key[5] = buffers.lse
    // the indptr is bound to this plan's sequences: the kernel reads their count from its length
    const group = this.mergeGroups.get(key, indptrBytes, () => [
      bindGroup(this.device, pipeline, [
        [seqPartialIndptr.buffer, indptrBytes], [seqPartials.buffer], [partialO.buffer], [partialLse.buffer],
        [buffers.out], [buffers.lse], [this.mergeParams]
      ])
    ])[0]!
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, group)
    dispatchGrid(pass, prepared.mergeGrid, 1, this.counters)
  }
}

/** The level tile the options ask for, refused before any compile when it does not fit the device. */
const levelTileOf = (options: TreeAttentionOptions, limits: GPUSupportedLimits): LevelTile => {
  const variant = options.levelVariant
  if (variant !== undefined && !LEVEL_VARIANTS.includes(variant)) {
    throw new RangeError(
      `attention: levelVariant (${String(variant)}) must be one of ${LEVEL_VARIANTS.join(", ")} (a matrix tile is given as levelTile, as the tuner picks it)`
    )
  }
  const tile = options.levelTile
  if (tile === undefined) return chooseLevelTile(options.headDim, limits, variant)
  if (levelVariantOf(tile) === "matrix") return tile
  if (!levelTileFits(options.headDim, tile, limits)) {
    throw new RangeError(`attention: the ${levelVariantOf(tile)} level tile ${JSON.stringify(tile)} does not fit this device at head dim ${options.headDim}`)
  }
  return tile
}

/** Whether the decode kernel merges (TreeAttentionOptions.fuseMerge), refused where asked for and the device cannot bind it. */
const fuseMergeOf = (options: TreeAttentionOptions, limits: GPUSupportedLimits): boolean => {
  const fits = limits.maxStorageBuffersPerShaderStage >= FUSED_DECODE_STORAGE_BUFFERS
  if (options.fuseMerge === true && !fits) {
    throw new RangeError(
      `attention: fuseMerge needs ${FUSED_DECODE_STORAGE_BUFFERS} storage buffers per shader stage; this device binds ${limits.maxStorageBuffersPerShaderStage}`
    )
  }
  return options.fuseMerge ?? fits
}

/** The level kernel's WGSL for `tile`; a matrix tile is refused before any compile where the units or the cache cannot run it. */
const levelKernelCode = (device: GPUDevice, options: TreeAttentionOptions, tile: LevelTile, kv: KvStorage): string => {
  const { headDim } = options
  if (levelVariantOf(tile) !== "matrix") return levelAttentionWgsl({ headDim, tile, kv })
  const units = options.matrixUnits ?? deviceMatrixUnits(device)
  if (typeof units === "string") throw new RangeError(`attention: a matrix level tile needs matrix units: ${units}`)
  const rowMatrices = matrixLevelRowMatrices(units, tile)
  if (rowMatrices === undefined) {
    const made = MATRIX_LEVEL_ROW_MATRICES.map((r) => JSON.stringify(matrixLevelTile(units, r)))
    throw new RangeError(`attention: the matrix level tile ${JSON.stringify(tile)} is none of those its matrix units make, ${made.join(", ")}`)
  }
  const spec = { headDim, kv, units, rowMatrices }
  const problem = matrixLevelProblem(spec, device.limits)
  if (problem !== undefined) throw new RangeError(`attention: ${problem}`)
  return levelAttentionMatrixWgsl(spec)
}

const createAttention = async (device: GPUDevice, options: TreeAttentionOptions, decodeMaxEntries: number): Promise<AttentionKernels> => {
  validate(options)
  const { heads, kvHeads, headDim, blockSize } = options
  const config = {
    heads, kvHeads, headDim, blockSize, scale: attentionScale(options), poolShards: options.poolShards ?? 1, kvDtype: options.kvDtype ?? "f32"
  } as const
  const kv = kvStorageFor(config.kvDtype, options.capabilities ?? capabilitiesOf(device))
  const group = heads / kvHeads
  const levelTile = decodeMaxEntries === Infinity ? null : levelTileOf(options, device.limits)
  const decodeTile = chooseDecodeTile(headDim, group, device.limits)
  const fuseMerge = fuseMergeOf(options, device.limits)
  const pipelines: Pipelines = {
    level: levelTile === null
      ? null
      : await cachedPipeline(device, `level-attention (${levelVariantOf(levelTile)})`, levelKernelCode(device, options, levelTile, kv)),
    decode: await cachedPipeline(
      device, fuseMerge ? "decode-attention (merging)" : "decode-attention", decodeAttentionWgsl({ headDim, group, tile: decodeTile, kv, fusedMerge: fuseMerge })
    ),
    merge: await cachedPipeline(device, "merge-states", MERGE_STATES_WGSL)
  }
  return new Attention(device, config, kv, levelTile, decodeTile, pipelines, options, decodeMaxEntries, fuseMerge)
}

/**
 * Hydragen tree attention: shared nodes on the level kernel (their KV read once
 * for all stacked query rows), single-sequence nodes on the decode kernel,
 * then the merge of each sequence's partial states.
 */
export const createTreeAttention = (device: GPUDevice, options: TreeAttentionOptions): Promise<TreeAttention> =>
  createAttention(device, options, options.decodeMaxEntries ?? 1)

/**
 * Baseline: per-sequence paged flash-decoding. Every sequence walks its own
 * path's block tables (chunks split for parallelism) and merges its chunks;
 * shared prefixes are read once per sequence.
 */
export const createPagedDecode = (
  device: GPUDevice,
  options: Omit<TreeAttentionOptions, "decodeMaxEntries">
): Promise<PagedDecode> => createAttention(device, options, Infinity)
