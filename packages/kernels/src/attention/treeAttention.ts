/**
 * Host side of tree attention (Hydragen) and of the per-sequence paged
 * decoding baseline. Plain TypeScript: `prepare` once per plan (uploads the
 * plan and its work items), `encode` once per layer (records the dispatches,
 * no CPU round trip), `destroy` frees what each object created.
 */
import type { LevelPlan } from "@canopy/tree-cache"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { createStorageBuffer, uniformBuffer, uploadBuffer } from "../gpu/resources.ts"
import { decodeAttentionWgsl } from "./decodeAttention.wgsl.ts"
import { checkKvPool, kvHeadDimProblem, type KvDtype, kvStorageFor, type KvStorage } from "./kvStorage.ts"
import { levelAttentionWgsl } from "./levelAttention.wgsl.ts"
import { MERGE_STATES_WGSL } from "./mergeStates.wgsl.ts"
import { cachedPipeline } from "./pipelines.ts"
import { attentionScale, type AttentionShape } from "./reference.ts"
import { scheduleAttention, workItemCount } from "./schedule.ts"
import { ATTENTION_PARAM_WORDS, WORK_ITEM_WORDS } from "./workItem.wgsl.ts"
import { chooseDecodeTile, chooseLevelTile, type DecodeTile, type LevelTile } from "./tiling.ts"

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
  /**
   * What the device can do, as the kernels should assume (default: the
   * device's own record, capabilitiesOf). With shaderF16 false, f16 pools are
   * read as packed words even where native f16 exists (the same bytes).
   */
  readonly capabilities?: GpuCapabilities
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

/** A plan uploaded for one attention object; encode it for every layer of a step. */
export interface PreparedAttention {
  readonly numSequences: number
  readonly levelWorkgroups: number
  readonly decodeWorkgroups: number
  readonly partials: number
  readonly chunkTokens: number
  destroy(): void
}

export interface AttentionKernels {
  readonly config: TreeAttentionConfig
  /** how the kernels read the pools (from kvDtype and the device's capabilities) */
  readonly kvStorage: KvStorage
  /** null where this object never uses the level kernel (the baseline) */
  readonly levelTile: LevelTile | null
  readonly decodeTile: DecodeTile
  /**
   * Uploads the plan and grows the partial-state buffers if needed. Growing
   * replaces buffers that earlier encodes used: submit encoded work first.
   */
  prepare(plan: LevelPlan): PreparedAttention
  /**
   * Records into one compute pass: one level-kernel dispatch covering the
   * shared nodes of every level, one decode-kernel dispatch covering the
   * single-sequence nodes, one merge. The levels are independent (each writes
   * its own partial slots), so they share dispatches instead of one per level.
   */
  encode(encoder: GPUCommandEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void
  destroy(): void
}

export type TreeAttention = AttentionKernels
export type PagedDecode = AttentionKernels

interface Uploaded extends PreparedAttention {
  readonly owner: object
  readonly blockIndices: GPUBuffer
  readonly entries: GPUBuffer
  readonly tileItems: GPUBuffer | null
  readonly decodeItems: GPUBuffer | null
  readonly seqPartialIndptr: GPUBuffer
  readonly seqPartials: GPUBuffer
  readonly destroyed: () => boolean
}

const MAX_GROUPS_PER_DIMENSION = 65535

const dispatchItems = (pass: GPUComputePassEncoder, count: number, depth: number): void => {
  const x = Math.min(count, MAX_GROUPS_PER_DIMENSION)
  pass.dispatchWorkgroups(x, Math.ceil(count / x), depth)
}

const bindSized = (
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  entries: ReadonlyArray<readonly [GPUBuffer, number?, number?]>
): GPUBindGroup =>
  device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: entries.map(([buffer, size, offset], binding) => ({
      binding,
      resource: { buffer, ...(size === undefined ? {} : { size }), ...(offset === undefined ? {} : { offset }) }
    }))
  })

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

const createAttention = async (
  device: GPUDevice,
  options: TreeAttentionOptions,
  decodeMaxEntries: number
): Promise<AttentionKernels> => {
  validate(options)
  const { heads, kvHeads, headDim, blockSize } = options
  const poolShards = options.poolShards ?? 1
  const kvDtype = options.kvDtype ?? "f32"
  const config: TreeAttentionConfig = { heads, kvHeads, headDim, blockSize, scale: attentionScale(options), poolShards, kvDtype }
  const kv = kvStorageFor(kvDtype, options.capabilities ?? capabilitiesOf(device))
  const group = heads / kvHeads
  const usesLevel = decodeMaxEntries !== Infinity
  const levelTile = usesLevel ? chooseLevelTile(headDim, device.limits) : null
  const decodeTile = chooseDecodeTile(headDim, group, device.limits)
  const levelPipeline =
    levelTile === null ? null : await cachedPipeline(device, "level-attention", levelAttentionWgsl({ headDim, tile: levelTile, kv }))
  const decodePipeline = await cachedPipeline(device, "decode-attention", decodeAttentionWgsl({ headDim, group, tile: decodeTile, kv }))
  const mergePipeline = await cachedPipeline(device, "merge-states", MERGE_STATES_WGSL)

  // one parameter block per pool shard: its first KV head and head count
  const poolHeads = kvHeads / poolShards
  const shardParams = Array.from({ length: poolShards }, (_, s) => {
    const words = new Uint32Array(ATTENTION_PARAM_WORDS)
    words.set([heads, kvHeads, group, blockSize])
    new Float32Array(words.buffer).set([config.scale!], 4)
    words.set([poolHeads, s * poolHeads], 5)
    return uniformBuffer(device, `attention params, pool shard ${s}`, words)
  })
  const mergeParams = uniformBuffer(device, "merge params", Uint32Array.of(heads, headDim / 4))

  const owner = {}
  let partialO: GPUBuffer | null = null
  let partialLse: GPUBuffer | null = null
  let capacity = 0
  let destroyed = false
  const live = new Set<Uploaded>()

  const ensurePartials = (count: number): void => {
    if (partialO !== null && count <= capacity) return
    partialO?.destroy()
    partialLse?.destroy()
    // grow geometrically: plans get a little larger every decoding step
    capacity = Math.max(count, Math.ceil(capacity * 1.5), 1)
    partialO = createStorageBuffer(device, "attention partial o", capacity * heads * headDim * 4)
    partialLse = createStorageBuffer(device, "attention partial lse", capacity * heads * 4)
  }

  const prepare = (plan: LevelPlan): PreparedAttention => {
    if (destroyed) throw new Error("attention: prepare after destroy")
    if (plan.blockSize !== blockSize) {
      throw new RangeError(`attention: plan blockSize ${plan.blockSize} differs from the pools' ${blockSize}`)
    }
    const schedule = scheduleAttention(plan, {
      group,
      kvHeads,
      tileRows: levelTile?.rows ?? 1,
      decodeMaxEntries,
      targetWorkgroups: options.targetWorkgroups ?? 1024,
      minChunkTokens: options.minChunkTokens ?? 64
    })
    ensurePartials(schedule.numPartials)
    const items = (label: string, data: Uint32Array): GPUBuffer | null =>
      data.length === 0 ? null : uploadBuffer(device, label, data)
    let freed = false
    const uploaded: Uploaded = {
      owner,
      numSequences: schedule.numSequences,
      levelWorkgroups: workItemCount(schedule.tileItems) * kvHeads,
      decodeWorkgroups: workItemCount(schedule.decodeItems) * kvHeads,
      partials: schedule.numPartials,
      chunkTokens: schedule.chunkTokens,
      blockIndices: uploadBuffer(device, "attention block indices", schedule.blockIndices),
      entries: uploadBuffer(device, "attention entries", schedule.entries),
      tileItems: items("level attention items", schedule.tileItems),
      decodeItems: items("decode attention items", schedule.decodeItems),
      seqPartialIndptr: uploadBuffer(device, "attention partial indptr", schedule.seqPartialIndptr),
      seqPartials: uploadBuffer(device, "attention partial slots", schedule.seqPartials),
      destroyed: () => freed,
      destroy() {
        if (freed) return
        freed = true
        live.delete(uploaded)
        const u = uploaded
        for (const b of [u.blockIndices, u.entries, u.tileItems, u.decodeItems, u.seqPartialIndptr, u.seqPartials]) b?.destroy()
      }
    }
    live.add(uploaded)
    return uploaded
  }

  const encode = (encoder: GPUCommandEncoder, prepared: PreparedAttention, buffers: AttentionBuffers): void => {
    const p = prepared as Uploaded
    if (p.owner !== owner) throw new Error("attention: prepared by another attention object")
    if (p.destroyed()) throw new Error("attention: prepared plan was destroyed")
    if (partialO === null || partialLse === null) throw new Error("attention: encode after destroy")
    checkKvPool(buffers.kPool, kvDtype, "attention")
    checkKvPool(buffers.vPool, kvDtype, "attention")
    const shardBytes = poolShardBytes(buffers.kPool, poolShards)
    const pass = encoder.beginComputePass({ label: "tree attention" })
    const attend = (pipeline: GPUComputePipeline, items: GPUBuffer): void => {
      pass.setPipeline(pipeline)
      shardParams.forEach((params, s) => {
        pass.setBindGroup(
          0,
          bindSized(device, pipeline, [
            [items],
            [p.blockIndices],
            [p.entries],
            [buffers.q],
            [buffers.kPool, shardBytes, s * shardBytes],
            [buffers.vPool, shardBytes, s * shardBytes],
            [partialO!],
            [partialLse!],
            [params]
          ])
        )
        dispatchItems(pass, items.size / (WORK_ITEM_WORDS * 4), poolHeads)
      })
    }
    if (p.tileItems !== null && levelPipeline !== null) attend(levelPipeline, p.tileItems)
    if (p.decodeItems !== null) attend(decodePipeline, p.decodeItems)
    if (p.numSequences > 0) {
      pass.setPipeline(mergePipeline)
      pass.setBindGroup(
        0,
        bindSized(device, mergePipeline, [
          [p.seqPartialIndptr, (p.numSequences + 1) * 4],
          [p.seqPartials],
          [partialO],
          [partialLse],
          [buffers.out],
          [buffers.lse],
          [mergeParams]
        ])
      )
      dispatchItems(pass, p.numSequences, 1)
    }
    pass.end()
  }

  return {
    config,
    kvStorage: kv,
    levelTile,
    decodeTile,
    prepare,
    encode,
    destroy() {
      if (destroyed) return
      destroyed = true
      for (const p of [...live]) p.destroy()
      partialO?.destroy()
      partialLse?.destroy()
      partialO = partialLse = null
      for (const params of shardParams) params.destroy()
      mergeParams.destroy()
    }
  }
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
