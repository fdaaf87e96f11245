import {
  bindBuffers, createComputePipeline, createStorageBuffer, GpuValidationError, openGpu, readFloat32, referenceMatmul, referenceRmsNorm, referenceRope,
  relativeError, uploadBuffer, wgsl, type GpuHandle
} from "@canopy/kernels"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ModelConfig, ropeSpec } from "../src/model/config.ts"
import { ForwardBatchError } from "../src/model/errors.ts"
import { type AttentionCallback, Forward, type ForwardOptions } from "../src/model/forward.ts"
import { loadModel } from "../src/model/model.ts"
import { referenceLogits } from "../src/model/reference.ts"
import { PRESETS, saveModel } from "../src/model/synthetic.ts"
import { loadHostWeights, loadWeights } from "../src/model/folderWeights.ts"
import { type HostWeights, type ModelWeights, synthesizeHostWeights, synthesizeWeights } from "../src/model/weights.ts"

let gpu: GpuHandle
let dir: string
beforeAll(async () => {
  gpu = await openGpu()
  dir = await mkdtemp(join(tmpdir(), "canopy-forward-"))
})
afterAll(async () => {
  gpu?.close()
  await rm(dir, { recursive: true, force: true })
})

const BLOCK = 4
const BLOCKS = 8

/**
 * Attention for sequences of one token at position 0: each row attends only to
 * its own key, so out = v, read back from the pool at the row's (block, slot).
 */
const copyAttention = async (c: ModelConfig, slots: GPUBuffer): Promise<AttentionCallback> => {
  const device = gpu.device
  const pipeline = await createComputePipeline(device, "test-copy-attention", wgsl`
    @group(0) @binding(0) var<storage, read> slots: array<vec2u>;
    @group(0) @binding(1) var<storage, read> vPool: array<f32>;
    @group(0) @binding(2) var<storage, read_write> out: array<f32>;
    @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
      let perRow = ${c.numHeads * c.headDim}u;
      if (id.x >= arrayLength(&slots) * perRow) { return; }
      let r = id.x / perRow;
      let h = (id.x % perRow) / ${c.headDim}u;
      let i = id.x % ${c.headDim}u;
      let kvh = h / ${c.numHeads / c.numKvHeads}u;
      let s = slots[r];
      out[id.x] = vPool[((s.x * ${BLOCK}u + s.y) * ${c.numKvHeads}u + kvh) * ${c.headDim}u + i];
    }`)
  const rows = slots.size / 8
  return (encoder, _layer, b) => {
    const pass = encoder.beginComputePass()
    pass.setPipeline(pipeline)
    pass.setBindGroup(0, bindBuffers(device, pipeline, [slots, b.vPool, b.out]))
    pass.dispatchWorkgroups(Math.ceil((rows * c.numHeads * c.headDim) / 64))
    pass.end()
  }
}

/** Layer 0's key and value of `token` at `position`: they depend on the embedding only. */
const layer0KeyValue = (c: ModelConfig, host: HostWeights, token: number, position: number) => {
  const hd = c.hiddenSize
  const kvDim = c.numKvHeads * c.headDim
  const bias = (name: string) => (c.attentionBias ? host.get(`model.layers.0.self_attn.${name}.bias`)! : undefined)
  const e = Array.from(host.get("model.embed_tokens.weight")!).slice(token * hd, (token + 1) * hd)
  const xn = referenceRmsNorm(e, host.get("model.layers.0.input_layernorm.weight")!, hd, c.rmsNormEps)
  const k = referenceMatmul(xn, host.get("model.layers.0.self_attn.k_proj.weight")!, hd, kvDim, bias("k_proj"))
  const v = referenceMatmul(xn, host.get("model.layers.0.self_attn.v_proj.weight")!, hd, kvDim, bias("v_proj"))
  return { k: referenceRope(k, c.numKvHeads, [position], ropeSpec(c)), v }
}

/**
 * Runs single-token sequences through the GPU forward and compares logits and
 * greedy tokens with the reference. With one key, attention returns v whatever
 * the position, so rows may sit at any position; layer 0's pools are checked
 * against the RoPE'd key at that position. Returns the forward's dispatches
 * (the attention's own apart).
 */
const checkSingleTokens = async (
  c: ModelConfig,
  weights: ModelWeights,
  host: HostWeights,
  tokens: ReadonlyArray<number>,
  positions: ReadonlyArray<number> = tokens.map(() => 0),
  options: Pick<ForwardOptions, "fuseRopeAppend" | "matmul"> = {}
): Promise<number> => {
  const device = gpu.device
  const rows = tokens.length
  const kvSize = BLOCKS * BLOCK * c.numKvHeads * c.headDim * 4
  const kvPools = Array.from({ length: c.numLayers }, () => ({
    k: createStorageBuffer(device, "k-pool", kvSize), v: createStorageBuffer(device, "v-pool", kvSize)
  }))
  // Row r writes block ⌊r / BLOCK⌋, slot r mod BLOCK (a distinct cell per row).
  const slots = Uint32Array.from(tokens.flatMap((_, r) => [Math.floor(r / BLOCK), r % BLOCK]))
  const slotBuffer = uploadBuffer(device, "slots", slots)
  const forward = await Forward.create(device, weights, {
    maxRows: 16, maxLogitRows: 16, kvPools, blockSize: BLOCK, numBlocks: BLOCKS, ...options
  })
  const attention = await copyAttention(c, slotBuffer)
  const logitRows = Uint32Array.from(tokens.map((_, r) => rows - 1 - r))
  const sampled = await forward.step({
    tokens: Uint32Array.from(tokens),
    positions: Uint32Array.from(positions),
    slots,
    logitRows,
    sampling: tokens.map((_, r) => ({ temperature: 0, topK: 0, topP: 1, seed: 1, sequence: r, step: 0 }))
  }, attention)
  const logits = await forward.readLogits(rows)
  const kvRow = c.numKvHeads * c.headDim
  const kPool = await readFloat32(gpu.device, kvPools[0]!.k, BLOCKS * BLOCK * kvRow)
  const vPool = await readFloat32(gpu.device, kvPools[0]!.v, BLOCKS * BLOCK * kvRow)
  tokens.forEach((token, r) => {
    const expected = layer0KeyValue(c, host, token, positions[r]!)
    const cell = (slots[2 * r]! * BLOCK + slots[2 * r + 1]!) * kvRow
    expect(relativeError(kPool.subarray(cell, cell + kvRow), expected.k), `k of row ${r}`).toBeLessThan(1e-4)
    expect(relativeError(vPool.subarray(cell, cell + kvRow), expected.v), `v of row ${r}`).toBeLessThan(1e-4)
  })
  logitRows.forEach((row, j) => {
    const expected = referenceLogits(c, host, [tokens[row]!])[0]!
    const got = logits.subarray(j * c.vocabSize, (j + 1) * c.vocabSize)
    let diff = 0
    let scale = 0
    expected.forEach((e, i) => {
      diff = Math.max(diff, Math.abs(e - got[i]!))
      scale = Math.max(scale, Math.abs(e))
    })
    expect(diff / scale, `row ${row}`).toBeLessThan(1e-4)
    const best = expected.indexOf(Math.max(...expected))
    expect(sampled[j]).toBe(best)
  })
  const dispatches = forward.counters.dispatches
  forward.destroy()
  slotBuffer.destroy()
  for (const p of kvPools) {
    p.k.destroy()
    p.v.destroy()
  }
  return dispatches
}

describe("GPU forward against referenceLogits (single-token sequences)", () => {
  it("tiny preset with GPU-synthesized weights, decode-sized and prefill-sized batches", async () => {
    const { config: c, weights, tokenizer } = await loadModel(gpu.device, { kind: "synthetic", model: "tiny", seed: 5 })
    expect(c).toEqual(PRESETS.tiny)
    const host = synthesizeHostWeights(c, 5)
    await checkSingleTokens(c, weights, host, tokenizer.encode("Hi"), [0, 4000, 77])
    await checkSingleTokens(c, weights, host, Array.from({ length: 13 }, (_, i) => (i * 37) % 260), Array.from({ length: 13 }, (_, i) => i * 311))
    weights.destroy()
  })

  it("RoPE and the KV append in the q/k/v projection's epilogue, as a kernel of their own, or fused for prefill rows only: the same logits and pools", async () => {
    const { config: c, weights } = await loadModel(gpu.device, { kind: "synthetic", model: "tiny", seed: 6 })
    const host = synthesizeHostWeights(c, 6)
    const decode = [3, 141, 59]
    const prefill = Array.from({ length: 11 }, (_, i) => (i * 53) % 260)
    const at = (tokens: ReadonlyArray<number>) => tokens.map((_, i) => i * 977)
    const run = (tokens: ReadonlyArray<number>, options: Pick<ForwardOptions, "fuseRopeAppend" | "matmul">) =>
      checkSingleTokens(c, weights, host, tokens, at(tokens), options)
    // this adapter's kernels (register tiles) have the epilogue in both regimes: one dispatch a layer fewer
    expect(await run(decode, {})).toBe(await run(decode, { fuseRopeAppend: false }) - c.numLayers)
    expect(await run(prefill, {})).toBe(await run(prefill, { fuseRopeAppend: false }) - c.numLayers)
    // gemv has none: decoding rows take the kernel of their own, prefill rows the epilogue
    const mixed = { matmul: { decode: "gemv", prefill: "register" } } as const
    expect(await run(decode, mixed)).toBe(await run(decode, {}) + c.numLayers)
    expect(await run(prefill, mixed)).toBe(await run(prefill, {}))
    weights.destroy()
  })

  it("Qwen2-style biases, tied embeddings and GQA 3:1, saved as sharded bf16 and loaded from disk", async () => {
    const c: ModelConfig = {
      ...PRESETS.tiny, architecture: "Qwen2ForCausalLM", attentionBias: true, tieWordEmbeddings: true,
      numHeads: 6, numKvHeads: 2, headDim: 8, hiddenSize: 48, numLayers: 3
    }
    const folder = join(dir, "qwen-bf16")
    await saveModel(folder, c, synthesizeHostWeights(c, 9), { dtype: "BF16", shards: 3 })
    const loaded = await loadHostWeights(folder)
    expect(loaded.config).toEqual(c)
    const weights = await loadWeights(gpu.device, folder)
    // a bf16 checkpoint stays bf16 on the GPU, exactly (bf16 widens to f32 without rounding)
    expect(weights.weightType).toBe("bf16")
    await checkSingleTokens(c, weights, loaded.weights, [1, 100, 257, 42, 7], [9, 0, 123456, 17, 2047])
    weights.destroy()
    const f16Folder = join(dir, "qwen-f16")
    await saveModel(f16Folder, c, synthesizeHostWeights(c, 9), { dtype: "F16" })
    // and an f16 one stays f16 (model-weights.test.ts checks its bytes and its decoding)
    const kept = await loadWeights(gpu.device, f16Folder)
    expect(kept.weightType).toBe("f16")
    kept.destroy()
  })

  it("rejects a batch that does not fit its buffers or disagrees with itself", async () => {
    const c = PRESETS.tiny
    const weights = await synthesizeWeights(gpu.device, c, 1)
    const pool = () => ({ k: createStorageBuffer(gpu.device, "k", 64), v: createStorageBuffer(gpu.device, "v", 64) })
    const kvPools = [pool(), pool()]
    const forward = await Forward.create(gpu.device, weights, {
      maxRows: 2, maxLogitRows: 1, kvPools, blockSize: 1, numBlocks: 1
    })
    const greedy = { temperature: 0, topK: 0, topP: 1, seed: 0, sequence: 0, step: 0 }
    const ok = { tokens: Uint32Array.of(1, 2), positions: Uint32Array.of(0, 1), slots: Uint32Array.of(0, 0, 0, 0), logitRows: Uint32Array.of(1), sampling: [greedy] }
    const encoder = gpu.device.createCommandEncoder()
    for (const bad of [
      { ...ok, tokens: Uint32Array.of(1, 2, 3), positions: Uint32Array.of(0, 1, 2), slots: new Uint32Array(6) },
      { ...ok, positions: Uint32Array.of(0) },
      { ...ok, slots: Uint32Array.of(0, 0) },
      { ...ok, logitRows: Uint32Array.of(5) },
      { ...ok, sampling: [] }
    ]) expect(() => forward.encode(encoder, bad, () => {})).toThrow(ForwardBatchError)
    expect(() => forward.encode(encoder, ok, () => {})).not.toThrow()
    forward.destroy()
    const unusable = gpu.device.createBuffer({ size: 64, usage: GPUBufferUsage.COPY_DST })
    const error = await Forward.create(gpu.device, weights, {
      maxRows: 2, maxLogitRows: 1, kvPools: [kvPools[0]!, { k: unusable, v: unusable }], blockSize: 1, numBlocks: 1
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(GpuValidationError)
    unusable.destroy()
    weights.destroy()
    for (const p of kvPools) {
      p.k.destroy()
      p.v.destroy()
    }
  })
})
