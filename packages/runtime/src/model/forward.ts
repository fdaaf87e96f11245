/**
 * The GPU forward pass of one engine step, encoded into one command encoder
 * with no CPU round trip inside:
 *
 *   embedding → per layer [RMSNorm → q/k/v (+bias) → RoPE → KV append into the
 *   layer's pools → attention (the caller's callback) → o-proj + residual →
 *   RMSNorm → gate/up → SwiGLU → down + residual] → gather of the rows that
 *   need logits → final norm → lm_head → sampling.
 *
 * Scratch buffers are sized once for `maxRows` / `maxLogitRows` and every
 * dispatch is bound once; a step uploads its small inputs (tokens, positions,
 * KV slots, logit rows, sampling parameters, two row counts) and encodes.
 *
 * Buffer layouts (f32 unless noted, row-major):
 *   q, attention out  [rows][heads][headDim]      lse [rows][heads]
 *   k, v (this step)  [rows][kvHeads][headDim]
 *   KV pools          [numBlocks][blockSize][kvHeads][headDim] of options.kvDtype, one K and one V per layer
 *   logits            [logitRows][vocab]          sampled tokens u32 [logitRows]
 */
import {
  type AttentionBuffers, type BoundGather, type BoundKvAppend, type BoundMatmul, type BoundRmsNorm, type BoundRope, type BoundSampling,
  type BoundSwiglu, countingPass, createRowCount, createStorageBuffer, GatherRowsKernel, GpuValidationError, GpuWorkCounters, KvAppendKernel, type KvDtype, MatmulKernel,
  packSamplingParams, readFloat32, RmsNormKernel, RopeKernel, type RowCount, SAMPLING_PARAM_WORDS,
  SamplingKernel, type SamplingParams, SwigluKernel
} from "@canopy/kernels"
import { ropeSpec } from "./config.ts"
import { ForwardBatchError } from "./errors.ts"
import type { ModelWeights } from "./weights.ts"

/** Encodes the attention of `layer` for the current step's rows (no compute pass is open when it is called). */
export type AttentionCallback = (encoder: GPUCommandEncoder, layer: number, buffers: AttentionBuffers) => void

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
}

interface LayerDispatches {
  readonly norm1: BoundRmsNorm
  readonly q: BoundMatmul
  readonly k: BoundMatmul
  readonly v: BoundMatmul
  readonly rope: BoundRope
  readonly append: BoundKvAppend
  readonly o: BoundMatmul
  readonly norm2: BoundRmsNorm
  readonly gateUp: BoundMatmul
  readonly swiglu: BoundSwiglu
  readonly down: BoundMatmul
}

export class Forward {
  /**
   * What encode asks of the GPU, cumulative: its dispatches and the bytes of
   * its queue writes. Every bind group and buffer is made by create, so a
   * step adds none (the step's attention keeps its own counters).
   */
  readonly counters = new GpuWorkCounters()

  private constructor(
    readonly weights: ModelWeights,
    readonly options: ForwardOptions,
    private readonly device: GPUDevice,
    private readonly inputs: {
      readonly tokens: GPUBuffer; readonly positions: GPUBuffer; readonly slots: GPUBuffer
      readonly logitIndex: GPUBuffer; readonly sampling: GPUBuffer
    },
    private readonly scratch: {
      readonly q: GPUBuffer; readonly attnOut: GPUBuffer; readonly lse: GPUBuffer
    },
    /** f32 [maxLogitRows][vocab] */
    readonly logits: GPUBuffer,
    /** u32 [maxLogitRows] */
    readonly sampled: GPUBuffer,
    /** MAP_READ staging for `sampled` */
    private readonly readback: GPUBuffer,
    private readonly rowCount: RowCount,
    private readonly logitCount: RowCount,
    private readonly embed: BoundGather,
    private readonly layers: ReadonlyArray<LayerDispatches>,
    private readonly tail: {
      readonly gather: BoundGather; readonly norm: BoundRmsNorm; readonly lmHead: BoundMatmul; readonly sample: BoundSampling
    },
    private readonly owned: ReadonlyArray<{ destroy(): void }>
  ) {}

  static async create(device: GPUDevice, weights: ModelWeights, options: ForwardOptions): Promise<Forward> {
    const c = weights.config
    if (options.kvPools.length !== c.numLayers) {
      throw new ForwardBatchError({ reason: `kvPools has ${options.kvPools.length} layers; the model has ${c.numLayers}` })
    }
    // The embedding and the projections are read as the weights are held; hidden rows are f32.
    const [embedGather, gather, norm, matmul, rope, append, swiglu, sampling] = await Promise.all([
      GatherRowsKernel.create(device, weights.weightType), GatherRowsKernel.create(device), RmsNormKernel.create(device),
      MatmulKernel.create(device, undefined, weights.weightType),
      RopeKernel.create(device), KvAppendKernel.create(device, options.kvDtype ?? "f32"), SwigluKernel.create(device), SamplingKernel.create(device)
    ])
    const R = options.maxRows
    const L = options.maxLogitRows
    const owned: Array<{ destroy(): void }> = [matmul]
    // A wrong buffer (too small, wrong usage) surfaces here as a typed error, not at the first submit.
    device.pushErrorScope("validation")
    try {
      const hd = c.hiddenSize
      const qDim = c.numHeads * c.headDim
      const kvDim = c.numKvHeads * c.headDim
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
        sampling: buffer("fwd-sampling", L * SAMPLING_PARAM_WORDS * 4)
      }
      const x = buffer("fwd-x", R * hd * 4)
      const xn = buffer("fwd-xn", R * hd * 4)
      const q = buffer("fwd-q", R * qDim * 4)
      const k = buffer("fwd-k", R * kvDim * 4)
      const v = buffer("fwd-v", R * kvDim * 4)
      const attnOut = buffer("fwd-attn-out", R * qDim * 4)
      const lse = buffer("fwd-lse", R * c.numHeads * 4)
      const gateUp = buffer("fwd-gate-up", R * 2 * c.intermediateSize * 4)
      const h = buffer("fwd-h", R * c.intermediateSize * 4)
      const xl = buffer("fwd-x-logit-rows", L * hd * 4)
      const xln = buffer("fwd-xn-logit-rows", L * hd * 4)
      const logits = buffer("fwd-logits", L * c.vocabSize * 4)
      const sampled = buffer("fwd-sampled", L * 4)
      const readback = device.createBuffer({ label: "fwd-sampled-readback", size: Math.max(16, L * 4), usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ })
      owned.push(readback)
      const rowCount = createRowCount(device, "fwd-rows")
      const logitCount = createRowCount(device, "fwd-logit-rows-count")
      owned.push(rowCount, logitCount)
      const rows = rowCount.buffer
      const keep = <T extends { destroy(): void }>(d: T): T => (owned.push(d), d)

      const embed = keep(embedGather.bind({ index: inputs.tokens, table: weights.embedding, out: x, count: rows, hidden: hd, tableRows: c.vocabSize }))
      const spec = ropeSpec(c)
      const layers = weights.layers.map((w, l): LayerDispatches => ({
        norm1: keep(norm.bind({ x, weight: w.inputNorm, y: xn, count: rows, dim: hd, eps: c.rmsNormEps })),
        q: keep(matmul.bind({ x: xn, w: w.q, bias: w.qBias, y: q, count: rows, inDim: hd, outDim: qDim })),
        k: keep(matmul.bind({ x: xn, w: w.k, bias: w.kBias, y: k, count: rows, inDim: hd, outDim: kvDim })),
        v: keep(matmul.bind({ x: xn, w: w.v, bias: w.vBias, y: v, count: rows, inDim: hd, outDim: kvDim })),
        rope: keep(rope.bind({ positions: inputs.positions, q, k, count: rows, heads: c.numHeads, kvHeads: c.numKvHeads, spec })),
        append: keep(append.bind({
          slots: inputs.slots, k, v, kPool: options.kvPools[l]!.k, vPool: options.kvPools[l]!.v, count: rows,
          kvHeads: c.numKvHeads, headDim: c.headDim, blockSize: options.blockSize, numBlocks: options.numBlocks,
          poolShards: options.poolShards ?? 1
        })),
        o: keep(matmul.bind({ x: attnOut, w: w.o, y: x, count: rows, inDim: qDim, outDim: hd, accumulate: true })),
        norm2: keep(norm.bind({ x, weight: w.postNorm, y: xn, count: rows, dim: hd, eps: c.rmsNormEps })),
        gateUp: keep(matmul.bind({ x: xn, w: w.gateUp, y: gateUp, count: rows, inDim: hd, outDim: 2 * c.intermediateSize })),
        swiglu: keep(swiglu.bind({ gateUp, h, count: rows, inter: c.intermediateSize })),
        down: keep(matmul.bind({ x: h, w: w.down, y: x, count: rows, inDim: c.intermediateSize, outDim: hd, accumulate: true }))
      }))
      const lrows = logitCount.buffer
      const tail = {
        gather: keep(gather.bind({ index: inputs.logitIndex, table: x, out: xl, count: lrows, hidden: hd, tableRows: R })),
        norm: keep(norm.bind({ x: xl, weight: weights.finalNorm, y: xln, count: lrows, dim: hd, eps: c.rmsNormEps })),
        lmHead: keep(matmul.bind({ x: xln, w: weights.lmHead, y: logits, count: lrows, inDim: hd, outDim: c.vocabSize })),
        sample: keep(sampling.bind({ logits, params: inputs.sampling, tokens: sampled, count: lrows, vocab: c.vocabSize }))
      }
      const error = await device.popErrorScope()
      if (error !== null) throw new GpuValidationError({ operation: "binding the forward pass", wgpuMessage: error.message })
      return new Forward(
        weights, options, device, inputs, { q, attnOut, lse }, logits, sampled, readback, rowCount, logitCount, embed, layers, tail, owned
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
   * layer's attention for these rows (the caller's plan and kernels).
   */
  encode(encoder: GPUCommandEncoder, batch: ForwardBatch, attention: AttentionCallback): void {
    const rows = batch.tokens.length
    const logitRows = batch.logitRows.length
    this.check(batch)
    this.write(this.inputs.tokens, batch.tokens)
    this.write(this.inputs.positions, batch.positions)
    this.write(this.inputs.slots, batch.slots)
    if (logitRows > 0) {
      this.write(this.inputs.logitIndex, batch.logitRows)
      this.write(this.inputs.sampling, packSamplingParams(batch.sampling))
    }
    this.rowCount.set(rows)
    this.logitCount.set(logitRows)
    // the two row counts: one u32 each
    this.counters.bytesWritten += 8
    if (rows === 0) return

    let pass = countingPass(encoder.beginComputePass({ label: "forward-embedding" }), this.counters)
    this.embed.encode(pass, rows)
    this.layers.forEach((d, l) => {
      d.norm1.encode(pass, rows)
      d.q.encode(pass, rows)
      d.k.encode(pass, rows)
      d.v.encode(pass, rows)
      d.rope.encode(pass, rows)
      d.append.encode(pass, rows)
      pass.end()
      const pools = this.options.kvPools[l]!
      attention(encoder, l, {
        q: this.scratch.q, kPool: pools.k, vPool: pools.v, out: this.scratch.attnOut, lse: this.scratch.lse
      })
      pass = countingPass(encoder.beginComputePass({ label: `forward-layer-${l}` }), this.counters)
      d.o.encode(pass, rows)
      d.norm2.encode(pass, rows)
      d.gateUp.encode(pass, rows)
      d.swiglu.encode(pass, rows)
      d.down.encode(pass, rows)
    })
    this.tail.gather.encode(pass, logitRows)
    this.tail.norm.encode(pass, logitRows)
    this.tail.lmHead.encode(pass, logitRows)
    this.tail.sample.encode(pass, logitRows)
    pass.end()
  }

  /** Encodes, submits and reads back the sampled token of each logit row. */
  async step(batch: ForwardBatch, attention: AttentionCallback): Promise<Uint32Array> {
    const encoder = this.device.createCommandEncoder({ label: "forward-step" })
    this.encode(encoder, batch, attention)
    const n = batch.logitRows.length
    // The sampled ids ride back in the step's own submission, through one staging buffer kept for it.
    if (n > 0) encoder.copyBufferToBuffer(this.sampled, 0, this.readback, 0, n * 4)
    this.device.queue.submit([encoder.finish()])
    if (n === 0) return new Uint32Array(0)
    await this.readback.mapAsync(GPUMapMode.READ, 0, n * 4)
    try {
      return new Uint32Array(this.readback.getMappedRange(0, n * 4).slice(0))
    } finally {
      this.readback.unmap()
    }
  }

  /** Reads the logits of the last step's first `rows` logit rows. */
  readLogits(rows: number): Promise<Float32Array> {
    return readFloat32(this.device, this.logits, rows * this.weights.config.vocabSize)
  }

  destroy(): void {
    for (const o of this.owned) o.destroy()
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
    for (const r of b.logitRows) if (r >= rows) fail(`logit row ${r} is not a row of this ${rows}-row batch`)
  }
}
