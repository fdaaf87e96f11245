import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readUint32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount } from "../src/model/common.ts"
import {
  packSamplingParams, referenceSample, referenceSamplingDistribution, SamplingKernel, type SamplingParams
} from "../src/model/sampling.ts"

let gpu: GpuHandle
let kernel: SamplingKernel
let small: SamplingKernel
beforeAll(async () => {
  gpu = await openGpu()
  kernel = await SamplingKernel.create(gpu.device)
  // The software adapter runs each invocation of a row's workgroup in turn: the
  // many-draw test uses 32 threads per row to stay fast.
  small = await SamplingKernel.create(gpu.device, 32)
})
afterAll(() => gpu?.close())

/** Samples one token for each row of `logits` [rows][vocab]. */
const sample = async (
  logits: Float32Array,
  vocab: number,
  params: ReadonlyArray<SamplingParams>,
  k: SamplingKernel = kernel
): Promise<Uint32Array> => {
  const device = gpu.device
  const rows = params.length
  const bl = uploadBuffer(device, "logits", logits)
  const bp = uploadBuffer(device, "params", packSamplingParams(params))
  const bt = createStorageBuffer(device, "tokens", rows * 4)
  const count = createRowCount(device, "rows", rows)
  const bound = k.bind({ logits: bl, params: bp, tokens: bt, count: count.buffer, vocab })
  const encoder = device.createCommandEncoder()
  const pass = encoder.beginComputePass()
  bound.encode(pass, rows)
  pass.end()
  device.queue.submit([encoder.finish()])
  const tokens = await readUint32(device, bt, rows)
  for (const b of [bl, bp, bt]) b.destroy()
  count.destroy()
  bound.destroy()
  return tokens
}

const repeat = (row: ArrayLike<number>, times: number): Float32Array => {
  const out = new Float32Array(row.length * times)
  for (let r = 0; r < times; r++) out.set(Array.from(row), r * row.length)
  return out
}

describe("GPU sampling", () => {
  it("is greedy (lowest index on ties) for temperature 0 and for top-k = 1", async () => {
    const vocab = 1000
    const logits = new Float32Array(3 * vocab)
    for (let i = 0; i < logits.length; i++) logits[i] = Math.sin(i * 1.7) * 5
    logits[vocab + 17] = 50
    logits[vocab + 900] = 50
    logits[2 * vocab + 999] = 60
    const base = { topK: 0, topP: 1, seed: 1, sequence: 0, step: 0 }
    const params = [
      { ...base, temperature: 0 }, { ...base, temperature: 0 }, { ...base, temperature: 0.8, topK: 1 }
    ]
    const got = await sample(logits, vocab, params)
    params.forEach((p, r) => expect(got[r]).toBe(referenceSample(logits.subarray(r * vocab, (r + 1) * vocab), p)))
    expect(got[1]).toBe(17)
    expect(got[2]).toBe(999)
  })

  it("draws from the temperature/top-k/top-p distribution (chi-square over fixed seeds)", async () => {
    const logits = [2.0, 1.5, 1.5, 0.3, -0.2, -1.0, 0.9, -3.0]
    const vocab = logits.length
    const draws = 2000
    const cases: ReadonlyArray<Omit<SamplingParams, "sequence" | "step" | "seed">> = [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.7, topK: 4, topP: 1 },
      { temperature: 1.3, topK: 0, topP: 0.8 },
      { temperature: 0.9, topK: 6, topP: 0.9 }
    ]
    for (const c of cases) {
      const params = Array.from({ length: draws }, (_, r) => ({ ...c, seed: 1234, sequence: r, step: 7 }))
      const tokens = await sample(repeat(logits, draws), vocab, params, small)
      const expected = referenceSamplingDistribution(logits, params[0]!)
      const counts = new Float64Array(vocab)
      for (const t of tokens) counts[t]! += 1
      let chi2 = 0
      let cells = 0
      for (let i = 0; i < vocab; i++) {
        if (expected[i] === 0) {
          expect(counts[i], `token ${i} was filtered out`).toBe(0)
          continue
        }
        chi2 += (counts[i]! - draws * expected[i]!) ** 2 / (draws * expected[i]!)
        cells++
      }
      // χ² with ≤ 7 degrees of freedom exceeds 30 with probability < 1e-4; the seeds are fixed, so this is deterministic.
      expect(chi2, JSON.stringify({ c, counts: Array.from(counts) })).toBeLessThan(30)
      expect(cells).toBeGreaterThan(1)
    }
  })

  it("is reproducible and independent of batch order, and matches the float64 draw", async () => {
    const vocab = 300
    const rows = 16
    const logits = Float32Array.from({ length: rows * vocab }, (_, i) => Math.cos(i * 0.37) * 3)
    const params = Array.from({ length: rows }, (_, r) => ({
      temperature: 0.5 + (r % 4) * 0.3, topK: [0, 20, 50, 5][r % 4]!, topP: [1, 0.95, 0.7, 1][(r >> 2) % 4]!,
      seed: 99, sequence: r * 13, step: r
    }))
    const first = await sample(logits, vocab, params)
    const again = await sample(logits, vocab, params)
    expect(Array.from(again)).toEqual(Array.from(first))
    const order = Array.from({ length: rows }, (_, i) => (i * 5 + 3) % rows)
    const shuffledLogits = new Float32Array(rows * vocab)
    order.forEach((src, dst) => shuffledLogits.set(logits.subarray(src * vocab, (src + 1) * vocab), dst * vocab))
    const shuffled = await sample(shuffledLogits, vocab, order.map((src) => params[src]!))
    order.forEach((src, dst) => expect(shuffled[dst]).toBe(first[src]))
    params.forEach((p, r) => expect(first[r]).toBe(referenceSample(logits.subarray(r * vocab, (r + 1) * vocab), p)))
  })
})
