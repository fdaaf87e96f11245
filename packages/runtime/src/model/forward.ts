/**
 * The GPU forward pass of one engine step, encoded into one command encoder
 * with no CPU round trip inside:
 *
 *   embedding → per layer [RMSNorm + q/k/v (+bias) in one matmul, RoPE and the
 *   KV append in its epilogue (rotated q for the attention, K and V into the
 *   layer's pools) → attention (the caller's) → o-proj + residual → RMSNorm +
 *   gate/up in one matmul → SwiGLU + down + residual in one matmul] → gather
 *   of the rows that need logits → final norm + lm_head in one matmul → sampling.
 *
 * The norms and SwiGLU are the matmuls' prologues (matmul.ts: each reads its
 * input row through them), so a layer is four dispatches of the forward's
 * around the attention's. Where the q/k/v matmul of a row count has no
 * rope-append output (its kernel does not store four columns at once, the
 * pools are sharded, the head dim is not a multiple of 4, the device binds
 * too few storage buffers) or ForwardOptions.fuseRopeAppend is false, RoPE
 * and the append are a kernel of their own after it (ropeAppend.ts), on the
 * projection's qkv rows: five dispatches.
 *
 * Scratch buffers are sized once for `maxRows` / `maxLogitRows` and every
 * dispatch is bound once; a step uploads its small inputs (tokens, positions,
 * KV slots, logit rows, sampling parameters, and the two row counts where
 * they changed) and encodes. A row's token may instead be fed on the GPU from
 * the previous step's sampled ids (ForwardBatch.feed), so that a decode step
 * can be submitted before the one it follows is read back; the sampled ids
 * come back through two staging buffers, one per step in flight.
 * What the forward's own kernels encode depends on the row counts only, so it
 * is recorded once per row count and replayed (recordedDispatches.ts), and
 * the whole step, the attention included when it encodes into a pass
 * (PassAttention), is one compute pass.
 *
 * Buffer layouts (f32 unless noted, row-major):
 *   qkv (this step)   [rows][(heads + 2·kvHeads)·headDim]   q heads, k heads, v heads (without the fused epilogue)
 *   q, attention out  [rows][heads][headDim]                lse [rows][heads]
 *   KV pools          [numBlocks][blockSize][kvHeads][headDim] of options.kvDtype, one K and one V per layer
 *   logits            [logitRows][vocab]                    sampled tokens u32 [logitRows]
 */
import {
  type AttentionBuffers, type BoundGather, type BoundMatmul, type BoundRowGroups, type BoundSampling, createRowCount, createStorageBuffer,
  type BoundRopeAppend, FeedTokensKernel, GatherRowsKernel, GEMV_MAX_ROWS, GpuValidationError, NO_FEED, GpuWorkCounters, type KvDtype, type MatmulChoice, MatmulKernel,
  packSamplingParams, readFloat32, RopeAppendKernel, ropeAppendOutputProblem, ropeEpilogueProblem, type RowCount, SAMPLING_PARAM_WORDS, SamplingKernel,
  type SamplingParams
} from "@canopy/kernels"
import { ropeSpec } from "./config.ts"
import { ForwardBatchError } from "./errors.ts"
import { RecordedDispatches } from "./recordedDispatches.ts"
import type { ModelWeights } from "./weights.ts"

/** Encodes the attention of `layer` in compute passes of its own on `encoder` (the forward ends its pass first). */
export type AttentionCallback = (encoder: GPUCommandEncoder, layer: number, buffers: AttentionBuffers) => void

/** Encodes the attention of `layer` into the step's one compute pass, between the forward's dispatches. */
export interface PassAttention {
  readonly inPass: (pass: GPUComputePassEncoder, layer: number, buffers: AttentionBuffers) => void
}

export type StepAttention = AttentionCallback | PassAttention

export interface KvPools {
  readonly k: GPUBuffer
  readonly v: GPUBuffer
}

export interface ForwardOptions {
  readonly maxRows: number
  readonly maxLogitRows: number
  /** one K and one V pool per layer */
  readonly kvPools: ReadonlyArray<KvPools>
  readonly blockSize: number
  readonly numBlocks: number
  /** shards of each pool buffer (default 1), as in the KvCache and the attention kernels */
  readonly poolShards?: number
  /** element type of the pools (default "f32"), as in the KvCache: the KV append rounds to it */
  readonly kvDtype?: KvDtype
  /** the matmul kernel of each row regime (default: the device family's, defaultMatmulChoice), e.g. as tuneMatmul chose them */
  readonly matmul?: MatmulChoice
  /** RoPE and the KV append in the q/k/v projection's epilogue where it can do them (default true; see the header) */
  readonly fuseRopeAppend?: boolean
}

export interface ForwardBatch {
  /** u32 [rows] token ids */
  readonly tokens: Uint32Array
  /** u32 [rows] positions in their sequences */
  readonly positions: Uint32Array
  /** u32 [rows][2] (block, slot) each row's K/V is written to */
  readonly slots: Uint32Array
  /** u32 [logitRows] indices of the rows that need logits (e.g. the last token of each prefill run) */
  readonly logitRows: Uint32Array
  /** one per logit row */
  readonly sampling: ReadonlyArray<SamplingParams>
  /**
   * u32 [rows], optional (left out where no row is fed): the logit row of the
   * previous step with logits whose sampled id is this row's token (NO_FEED
   * where `tokens` holds it)
   */
  readonly feed?: Uint32Array
}

/** A MAP_READ staging buffer for the sampled ids, busy while a read-back maps it. */
interface Readback {
  readonly buffer: GPUBuffer
  busy: boolean
}

/** One layer's kernels before its attention and after it. */
interface LayerKernels {
  readonly beforeAttention: ReadonlyArray<{ encode(pass: GPUComputePassEncoder, rows: number): void }>
  readonly afterAttention: ReadonlyArray<{ encode(pass: GPUComputePassEncoder, rows: number): void }>
}

interface TailKernels {
  readonly gather: BoundGather
  /** with the final norm as its prologue */
  readonly lmHead: BoundMatmul
  readonly sample: BoundSampling
}

/**
 * A layer's q/k/v projection, RoPE and KV append: the projection with the
 * rope-append output where it covers the row count, the plain projection and
 * the rope-append kernel where not.
 */
const qkvStep = (fused: BoundMatmul | undefined, separate: () => readonly [BoundMatmul, BoundRopeAppend]) => {
  const apart = fused?.covers(1) === true && fused.covers(GEMV_MAX_ROWS + 1) ? undefined : separate()
  return {
    encode(pass: GPUComputePassEncoder, rows: number): void {
      if (fused?.covers(rows) === true) return fused.encode(pass, rows)
      apart![0].encode(pass, rows)
      apart![1].encode(pass, rows)
    }
  }
}

/** A recording and the row count it was made for. */
interface Recorded {
  readonly rows: number
  readonly dispatches: RecordedDispatches
}

/** The kernels that own buffers, made together: where one fails, the others are destroyed before the error goes on. */
const createOwningKernels = async (
  make: readonly [Promise<MatmulKernel>, Promise<RopeAppendKernel>]
): Promise<readonly [MatmulKernel, RopeAppendKernel]> => {
  const [matmul, ropeAppend] = await Promise.allSettled(make)
  if (matmul.status === "fulfilled" && ropeAppend.status === "fulfilled") return [matmul.value, ropeAppend.value]
  for (const made of [matmul, ropeAppend]) if (made.status === "fulfilled") made.value.destroy()
  throw matmul.status === "rejected" ? matmul.reason : (ropeAppend as PromiseRejectedResult).reason
}

export class Forward {
  /**
   * What encode asks of the GPU, cumulative: its dispatches and the bytes of
   * its queue writes. Every bind group and buffer is made by create, so a
   * step adds none (the step's attention keeps its own counters).
   */
  readonly counters = new GpuWorkCounters()
  /** the recording of the embedding and the layers for the last row count, and of the tail for the last logit-row count */
  private body: Recorded | undefined
  private tail: Recorded | undefined
  /** what the row-count uniforms hold (both start at 0) */
  private heldRows = 0
  private heldLogitRows = 0
  /** the staging buffer the next step with logit rows reads back through */
  private nextReadback = 0

  private constructor(
    readonly weights: ModelWeights,
    readonly options: ForwardOptions,
    private readonly device: GPUDevice,
    private readonly inputs: {
      readonly tokens: GPUBuffer; readonly positions: GPUBuffer; readonly slots: GPUBuffer
      readonly logitIndex: GPUBuffer; readonly sampling: GPUBuffer; readonly feed: GPUBuffer
    },
    /** the sampling parameters of a step, packed: kept, so a step allocates nothing for them */
    private readonly samplingWords: Uint32Array,
    /** what each layer's attention reads and writes */
    private readonly attentionBuffers: ReadonlyArray<AttentionBuffers>,
    /** f32 [maxLogitRows][vocab] */
    readonly logits: GPUBuffer,
    /** u32 [maxLogitRows] */
    readonly sampled: GPUBuffer,
    /** staging for `sampled`, used in turn */
    private readonly readbacks: readonly [Readback, Readback],
    private readonly rowCount: RowCount,
    private readonly logitCount: RowCount,
    private readonly embed: BoundGather,
    private readonly feedTokens: BoundRowGroups,
    private readonly layers: ReadonlyArray<LayerKernels>,
    private readonly tailKernels: TailKernels,
    private readonly owned: ReadonlyArray<{ destroy(): void }>
  ) {}

  static async create(device: GPUDevice, weights: ModelWeights, options: ForwardOptions): Promise<Forward> {
    const c = weights.config
    if (options.kvPools.length !== c.numLayers) {
      throw new ForwardBatchError({ reason: `kvPools has ${options.kvPools.length} layers; the model has ${c.numLayers}` })
    }
    const kvDtype = options.kvDtype ?? "f32"
    // The embedding and the projections are read as the weights are held; hidden rows are f32.
    const [embedGather, gather, sampling, feedTokens] = await Promise.all([
      GatherRowsKernel.create(device, weights.weightType), GatherRowsKernel.create(device), SamplingKernel.create(device),
      FeedTokensKernel.create(device)
    ])
    const ropeShape = {
      heads: c.numHeads, kvHeads: c.numKvHeads, spec: ropeSpec(c), blockSize: options.blockSize, numBlocks: options.numBlocks,
      poolShards: options.poolShards ?? 1
    }
    const fuse = (options.fuseRopeAppend ?? true) && ropeEpilogueProblem(ropeShape) === undefined &&
      ropeAppendOutputProblem(device, "rmsnorm") === undefined
    const [matmul, ropeAppend] = await createOwningKernels([
      MatmulKernel.create(device, options.matmul, weights.weightType, undefined, {
        inputs: ["plain", "rmsnorm", "swiglu"], ropeAppend: fuse ? { input: "rmsnorm", kvDtype } : undefined
      }),
      RopeAppendKernel.create(device, ropeShape, kvDtype)
    ])
    const R = options.maxRows
    const L = options.maxLogitRows
    const owned: Array<{ destroy(): void }> = [matmul, ropeAppend]
    // A wrong buffer (too small, wrong usage) surfaces here as a typed error, not at the first submit.
    device.pushErrorScope("validation")
    try {
      const hd = c.hiddenSize
      const qDim = c.numHeads * c.headDim
      const qkvDim = qDim + 2 * c.numKvHeads * c.headDim
      const buffer = (label: string, bytes: number): GPUBuffer => {
        const b = createStorageBuffer(device, label, bytes)
        owned.push(b)
        return b
      }
      const inputs = {
        tokens: buffer("fwd-tokens", R * 4),
        positions: buffer("fwd-positions", R * 4),
        slots: buffer("fwd-slots", R * 8),
        logitIndex: buffer("fwd-logit-rows", L * 4),
        sampling: buffer("fwd-sampling", L * SAMPLING_PARAM_WORDS * 4),
        feed: buffer("fwd-feed", R * 4)
      }
      const x = buffer("fwd-x", R * hd * 4)
      // the plain projection's rows, where some row count runs it
      let qkvRows: GPUBuffer | undefined
      const qkv = () => (qkvRows ??= buffer("fwd-qkv", R * qkvDim * 4))
      const q = buffer("fwd-q", R * qDim * 4)
      const attnOut = buffer("fwd-attn-out", R * qDim * 4)
      const lse = buffer("fwd-lse", R * c.numHeads * 4)
      const gateUp = buffer("fwd-gate-up", R * 2 * c.intermediateSize * 4)
      const xl = buffer("fwd-x-logit-rows", L * hd * 4)
      const logits = buffer("fwd-logits", L * c.vocabSize * 4)
      const sampled = buffer("fwd-sampled", L * 4)
      const readback = (): Readback => {
        const b = device.createBuffer({ label: "fwd-sampled-readback", size: Math.max(16, L * 4), usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ })
        owned.push(b)
        return { buffer: b, busy: false }
      }
      const readbacks = [readback(), readback()] as const
      const rowCount = createRowCount(device, "fwd-rows")
      const logitCount = createRowCount(device, "fwd-logit-rows-count")
      owned.push(rowCount, logitCount)
      const rows = rowCount.buffer
      const keep = <T extends { destroy(): void }>(d: T): T => (owned.push(d), d)
      const normed = (weight: GPUBuffer) => ({ kind: "rmsnorm", weight, eps: c.rmsNormEps }) as const

      const embed = keep(embedGather.bind({ index: inputs.tokens, table: weights.embedding, out: x, count: rows, hidden: hd, tableRows: c.vocabSize }))
      const feed = feedTokens.bind({ count: rows, feed: inputs.feed, sampled, tokens: inputs.tokens })
      const layers = weights.layers.map((w, l): LayerKernels => {
        const pools = options.kvPools[l]!
        const projection = { x, input: normed(w.inputNorm), w: w.qkv, bias: w.qkvBias, count: rows, inDim: hd, outDim: qkvDim }
        const rowInputs = { positions: inputs.positions, slots: inputs.slots, kPool: pools.k, vPool: pools.v }
        const fused = fuse ? keep(matmul.bind({ ...projection, y: q, output: ropeAppend.epilogue(rowInputs) })) : undefined
        const separate = () => [
          keep(matmul.bind({ ...projection, y: qkv() })), ropeAppend.bind({ ...rowInputs, qkv: qkv(), q, count: rows })
        ] as const
        return {
          beforeAttention: [qkvStep(fused, separate)],
          afterAttention: [
            keep(matmul.bind({ x: attnOut, w: w.o, y: x, count: rows, inDim: qDim, outDim: hd, accumulate: true })),
            keep(matmul.bind({ x, input: normed(w.postNorm), w: w.gateUp, y: gateUp, count: rows, inDim: hd, outDim: 2 * c.intermediateSize })),
            keep(matmul.bind({
              x: gateUp, input: { kind: "swiglu" }, w: w.down, y: x, count: rows, inDim: c.intermediateSize, outDim: hd, accumulate: true
            }))
          ]
        }
      })
      const lrows = logitCount.buffer
      const tail = {
        gather: keep(gather.bind({ index: inputs.logitIndex, table: x, out: xl, count: lrows, hidden: hd, tableRows: R })),
        lmHead: keep(matmul.bind({ x: xl, input: normed(weights.finalNorm), w: weights.lmHead, y: logits, count: lrows, inDim: hd, outDim: c.vocabSize })),
        sample: keep(sampling.bind({ logits, params: inputs.sampling, tokens: sampled, count: lrows, vocab: c.vocabSize }))
      }
      const attentionBuffers = options.kvPools.map((pools): AttentionBuffers => ({ q, kPool: pools.k, vPool: pools.v, out: attnOut, lse }))
      const error = await device.popErrorScope()
      if (error !== null) throw new GpuValidationError({ operation: "binding the forward pass", wgpuMessage: error.message })
      return new Forward(
        weights, options, device, inputs, new Uint32Array(Math.max(1, L) * SAMPLING_PARAM_WORDS), attentionBuffers, logits, sampled,
        readbacks, rowCount, logitCount, embed, feed, layers, tail, owned
      )
    } catch (e) {
      if (!(e instanceof GpuValidationError)) await device.popErrorScope()
      for (const o of owned) o.destroy()
      throw e
    }
  }

  /**
   * Uploads the batch's inputs (queue writes, ordered before the encoder's
   * submission) and encodes the step. The inputs live in one set of buffers, so
   * submit each step before encoding the next. `attention` encodes each
   * layer's attention for these rows (the caller's plan and kernels): into
   * the step's pass (PassAttention), or into passes of its own.
   */
  encode(encoder: GPUCommandEncoder, batch: ForwardBatch, attention: StepAttention): void {
    const rows = batch.tokens.length
    const logitRows = batch.logitRows.length
    this.check(batch)
    this.write(this.inputs.tokens, batch.tokens)
    this.write(this.inputs.positions, batch.positions)
    this.write(this.inputs.slots, batch.slots)
    if (logitRows > 0) {
      this.write(this.inputs.logitIndex, batch.logitRows)
      const words = packSamplingParams(batch.sampling, this.samplingWords)
      this.write(this.inputs.sampling, words.subarray(0, logitRows * SAMPLING_PARAM_WORDS))
    }
    // the row counts (one u32 each) only when they change: a run of decoding steps keeps them
    if (rows !== this.heldRows) this.setCount(this.rowCount, (this.heldRows = rows))
    if (logitRows !== this.heldLogitRows) this.setCount(this.logitCount, (this.heldLogitRows = logitRows))
    if (rows === 0) return
    const fed = batch.feed !== undefined
    if (fed) this.write(this.inputs.feed, batch.feed)

    const body = this.bodyFor(rows)
    const tail = this.tailFor(logitRows)
    this.counters.dispatches += body.dispatches + tail.dispatches
    const ownPasses = typeof attention === "function" ? attention : undefined
    const inPass = typeof attention === "function" ? undefined : attention.inPass
    let pass = encoder.beginComputePass({ label: "forward" })
    if (fed) {
      // Before the embedding reads the tokens, and before this step's sampling overwrites the ids it feeds from.
      this.feedTokens.encode(pass, rows)
      this.counters.dispatches++
    }
    for (let l = 0; l < this.layers.length; l++) {
      body.replay(pass, l)
      if (ownPasses === undefined) {
        inPass!(pass, l, this.attentionBuffers[l]!)
      } else {
        pass.end()
        ownPasses(encoder, l, this.attentionBuffers[l]!)
        pass = encoder.beginComputePass({ label: "forward" })
      }
    }
    body.replay(pass, this.layers.length)
    tail.replay(pass, 0)
    pass.end()
  }

  /**
   * Encodes, submits and reads back the sampled token of each logit row. Two
   * steps with logit rows may be in flight at once (the staging buffers).
   */
  async step(batch: ForwardBatch, attention: StepAttention): Promise<Uint32Array> {
    const n = batch.logitRows.length
    const readback = this.readbacks[this.nextReadback]!
    if (n > 0 && readback.busy) throw new ForwardBatchError({ reason: "two steps' sampled ids are being read back already" })
    const encoder = this.device.createCommandEncoder({ label: "forward-step" })
    this.encode(encoder, batch, attention)
    // The sampled ids ride back in the step's own submission.
    if (n > 0) encoder.copyBufferToBuffer(this.sampled, 0, readback.buffer, 0, n * 4)
    this.device.queue.submit([encoder.finish()])
    if (n === 0) return new Uint32Array(0)
    this.nextReadback ^= 1
    readback.busy = true
    try {
      await readback.buffer.mapAsync(GPUMapMode.READ, 0, n * 4)
      try {
        return new Uint32Array(readback.buffer.getMappedRange(0, n * 4).slice(0))
      } finally {
        readback.buffer.unmap()
      }
    } finally {
      readback.busy = false
    }
  }

  /** Reads the logits of the last step's first `rows` logit rows. */
  readLogits(rows: number): Promise<Float32Array> {
    return readFloat32(this.device, this.logits, rows * this.weights.config.vocabSize)
  }

  destroy(): void {
    for (const o of this.owned) o.destroy()
  }

  /**
   * The embedding and the layers for `rows` rows, in parts split at the
   * attentions: part l ends where layer l's attention goes.
   */
  private bodyFor(rows: number): RecordedDispatches {
    if (this.body?.rows !== rows) {
      const layers = this.layers
      const parts = Array.from({ length: layers.length + 1 }, (_, l) => (pass: GPUComputePassEncoder) => {
        if (l === 0) this.embed.encode(pass, rows)
        else for (const k of layers[l - 1]!.afterAttention) k.encode(pass, rows)
        if (l < layers.length) for (const k of layers[l]!.beforeAttention) k.encode(pass, rows)
      })
      this.body = { rows, dispatches: RecordedDispatches.record(parts) }
    }
    return this.body.dispatches
  }

  /** The gather of the logit rows, the final norm and lm_head, and sampling for `logitRows` rows. */
  private tailFor(logitRows: number): RecordedDispatches {
    if (this.tail?.rows !== logitRows) {
      const t = this.tailKernels
      this.tail = {
        rows: logitRows,
        dispatches: RecordedDispatches.record([(pass) => {
          for (const k of [t.gather, t.lmHead, t.sample]) k.encode(pass, logitRows)
        }])
      }
    }
    return this.tail.dispatches
  }

  private setCount(count: RowCount, rows: number): void {
    count.set(rows)
    this.counters.bytesWritten += 4
  }

  private write(buffer: GPUBuffer, data: Uint32Array): void {
    this.device.queue.writeBuffer(buffer, 0, data)
    this.counters.bytesWritten += data.byteLength
  }

  private check(b: ForwardBatch): void {
    const rows = b.tokens.length
    const fail = (why: string): never => {
      throw new ForwardBatchError({ reason: why })
    }
    if (rows > this.options.maxRows) fail(`${rows} rows exceed maxRows = ${this.options.maxRows}`)
    if (b.positions.length !== rows) fail(`positions has ${b.positions.length} entries for ${rows} rows`)
    if (b.slots.length !== 2 * rows) fail(`slots has ${b.slots.length} entries for ${rows} rows (2 per row)`)
    if (b.logitRows.length > this.options.maxLogitRows) {
      fail(`${b.logitRows.length} logit rows exceed maxLogitRows = ${this.options.maxLogitRows}`)
    }
    if (b.sampling.length !== b.logitRows.length) fail(`sampling has ${b.sampling.length} entries for ${b.logitRows.length} logit rows`)
    for (let i = 0; i < b.logitRows.length; i++) {
      if (b.logitRows[i]! >= rows) fail(`logit row ${b.logitRows[i]} is not a row of this ${rows}-row batch`)
    }
    if (b.feed !== undefined) {
      if (b.feed.length !== rows) fail(`feed has ${b.feed.length} entries for ${rows} rows`)
      for (const f of b.feed) if (f !== NO_FEED && f >= this.options.maxLogitRows) fail(`feed row ${f} is past maxLogitRows = ${this.options.maxLogitRows}`)
    }
  }
}
