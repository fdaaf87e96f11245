import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { createStorageBuffer, readUint32, uploadBuffer } from "../src/gpu/resources.ts"
import { createRowCount, type KernelVariant } from "../src/model/common.ts"
import {
  NON_FINITE_TOKEN, packSamplingParams, referenceSample, referenceSamplingDistribution, SamplingKernel, type SamplingParams
} from "../src/model/sampling.ts"

const variants: ReadonlyArray<KernelVariant> = ["gpu", "software"]

let gpu: GpuHandle
/** Per variant: the default reduction width, and 32 lanes for the many-draw test (fast on a software adapter). */
const kernels = new Map<KernelVariant, { readonly wide: SamplingKernel; readonly small: SamplingKernel }>()
beforeAll(async () => {
  gpu = await openGpu()
  for (const v of variants) {
    kernels.set(v, { wide: await SamplingKernel.create(gpu.device, undefined, v), small: await SamplingKernel.create(gpu.device, 32, v) })
  }
})
const wide = (v: KernelVariant): SamplingKernel => kernels.get(v)!.wide
const small = (v: KernelVariant): SamplingKernel => kernels.get(v)!.small
afterAll(() => gpu?.close())

/** Samples one token for each row of `logits` [rows][vocab]. */
const sample = async (
  logits: Float32Array,
  vocab: number,
  params: ReadonlyArray<SamplingParams>,
  k: SamplingKernel
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
  it.each(variants)("marks a row with a NaN or infinite logit as NON_FINITE_TOKEN, greedy or not, leaving other rows alone (%s variant)", async (variant) => {
    const vocab = 300
    const poison = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN]
    const rows = 2 * poison.length + 1
    const logits = new Float32Array(rows * vocab)
    for (let i = 0; i < logits.length; i++) logits[i] = Math.cos(i * 0.37) * 4
    // Poison at a different position of each row (first, last, inside), for both greedy and sampled rows.
    poison.forEach((v, j) => {
      logits[j * vocab + [0, vocab - 1, 123, 7][j]!] = v
      logits[(poison.length + j) * vocab + [vocab - 1, 0, 7, 123][j]!] = v
    })
    const base = { topK: 0, topP: 1, seed: 3, step: 0 }
    const params = Array.from({ length: rows }, (_, r): SamplingParams =>
      ({ ...base, sequence: r, temperature: r < poison.length || r === rows - 1 ? 0 : 0.9, topP: r % 2 === 0 ? 1 : 0.8 }))
    const got = await sample(logits, vocab, params, wide(variant))
    for (let r = 0; r < rows - 1; r++) expect(got[r], `row ${r}`).toBe(NON_FINITE_TOKEN)
    expect(got[rows - 1]).toBe(referenceSample(logits.subarray((rows - 1) * vocab), params[rows - 1]!))
  })

  it.each(variants)("is greedy (lowest index on ties) for temperature 0 and for top-k = 1 (%s variant)", async (variant) => {
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
    const got = await sample(logits, vocab, params, wide(variant))
    params.forEach((p, r) => expect(got[r]).toBe(referenceSample(logits.subarray(r * vocab, (r + 1) * vocab), p)))
    expect(got[1]).toBe(17)
    expect(got[2]).toBe(999)
  })

  it.each(variants)("draws from the temperature/top-k/top-p distribution (chi-square over fixed seeds, %s variant)", async (variant) => {
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
      const tokens = await sample(repeat(logits, draws), vocab, params, small(variant))
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

  it.each(variants)("is reproducible and independent of batch order, and matches the float64 draw (%s variant)", async (variant) => {
    const kernel = wide(variant)
    const vocab = 300
    const rows = 16
    const logits = Float32Array.from({ length: rows * vocab }, (_, i) => Math.cos(i * 0.37) * 3)
    const params = Array.from({ length: rows }, (_, r) => ({
      temperature: 0.5 + (r % 4) * 0.3, topK: [0, 20, 50, 5][r % 4]!, topP: [1, 0.95, 0.7, 1][(r >> 2) % 4]!,
      seed: 99, sequence: r * 13, step: r
    }))
    const first = await sample(logits, vocab, params, kernel)
    const again = await sample(logits, vocab, params, kernel)
    expect(Array.from(again)).toEqual(Array.from(first))
    const order = Array.from({ length: rows }, (_, i) => (i * 5 + 3) % rows)
    const shuffledLogits = new Float32Array(rows * vocab)
    order.forEach((src, dst) => shuffledLogits.set(logits.subarray(src * vocab, (src + 1) * vocab), dst * vocab))
    const shuffled = await sample(shuffledLogits, vocab, order.map((src) => params[src]!), kernel)
    order.forEach((src, dst) => expect(shuffled[dst]).toBe(first[src]))
    params.forEach((p, r) => expect(first[r]).toBe(referenceSample(logits.subarray(r * vocab, (r + 1) * vocab), p)))
  })

  it("the software and the gpu variant choose the same tokens (same hash, same summation order)", async () => {
    const vocab = 300
    const rows = 64
    // Many equal-mass ties and near-threshold top-p cut-offs: any change of summation order would show.
    const logits = Float32Array.from({ length: rows * vocab }, (_, i) => Math.round(Math.cos(i * 0.61) * 8) / 4)
    const params = Array.from({ length: rows }, (_, r) => ({
      temperature: [0, 0.6, 1, 1.7][r % 4]!, topK: [0, 3, 40, 299][(r >> 2) % 4]!, topP: [1, 0.5, 0.9, 0.999][(r >> 4) % 4]!,
      seed: 5, sequence: r, step: 3 * r
    }))
    for (const width of ["wide", "small"] as const) {
      const [a, b] = await Promise.all(variants.map((v) => sample(logits, vocab, params, kernels.get(v)![width])))
      expect(Array.from(b!), width).toEqual(Array.from(a!))
    }
  })
})
