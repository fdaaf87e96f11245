import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createPagedDecode, createTreeAttention, type TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import { uploadBuffer, readFloat32 } from "../src/gpu/resources.ts"
import { buildCase, caseAttentionOptions, compareOutputs, describeMismatches, headDimsBeyondPalette, type CaseSpec } from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const base: CaseSpec = {
  kvHeads: 1,
  group: 1,
  headDim: 16,
  blockSize: 4,
  parents: [null],
  lengths: [1],
  queries: [{ node: 0 }],
  scoreMagnitude: 5,
  seed: 7
}

const options = caseAttentionOptions

/** Runs the case through hydragen (default split and level kernel only) and the baseline. */
const expectAllMatch = async (spec: CaseSpec, extra: Partial<TreeAttentionOptions> = {}): Promise<void> => {
  const built = buildCase(spec)
  const reference = referenceTreeAttention(built.tree)
  const variants = [
    ["hydragen", await createTreeAttention(gpu.device, options(spec, extra))],
    ["hydragen, level kernel only", await createTreeAttention(gpu.device, options(spec, { ...extra, decodeMaxEntries: 0 }))],
    ["baseline", await createPagedDecode(gpu.device, options(spec, extra))]
  ] as const
  for (const [name, kernels] of variants) {
    try {
      const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
      const problems = compareOutputs(result, reference, built.tree.heads, spec.headDim, 1e-4)
      expect(problems, `${name}: ${describeMismatches(problems)}`).toEqual([])
    } finally {
      kernels.destroy()
    }
  }
}

describe("attention edge cases (hydragen, level-only and baseline)", () => {
  it("pools in 2 and 4 shards (bound one at a time) give the same answers", async () => {
    const spec = { ...base, kvHeads: 4, group: 2, parents: [null, 0, 0, 1], lengths: [70, 9, 33, 5], queries: [{ node: 3 }, { node: 2 }, { node: 1 }, { node: 3 }] }
    for (const poolShards of [2, 4]) await expectAllMatch(spec, { poolShards })
  })

  it("refuses a shard count that does not divide the KV heads", async () => {
    await expect(createTreeAttention(gpu.device, options({ ...base, kvHeads: 4 }, { poolShards: 3 }))).rejects.toThrow(/poolShards/)
  })

  it("a path with no tokens gives out = 0 and lse = −∞", async () => {
    const spec = { ...base, parents: [null, 0, null], lengths: [0, 0, 5], queries: [{ node: 1 }, { node: 2 }, { node: 0 }] }
    await expectAllMatch(spec)
    const kernels = await createTreeAttention(gpu.device, options(spec))
    const built = buildCase(spec)
    const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
    kernels.destroy()
    expect(result.lse[0]).toBe(-Infinity)
    expect(result.lse[2]).toBe(-Infinity)
    expect([...result.out.subarray(0, 16)]).toEqual(new Array(16).fill(0))
  })

  it("a single token", () => expectAllMatch(base))

  it("lengths exactly on block boundaries", () =>
    expectAllMatch({ ...base, parents: [null, 0, 1, 1], lengths: [8, 4, 12, 32], queries: [{ node: 2 }, { node: 3 }, { node: 3 }] }))

  it("block size 1 with GQA 4:1 and two KV heads", () =>
    expectAllMatch({ ...base, blockSize: 1, kvHeads: 2, group: 4, parents: [null, 0, 0], lengths: [37, 3, 9], queries: [{ node: 1 }, { node: 2 }, { node: 0 }] }))

  it("many rows sharing one long node (several row tiles and KV chunks)", () =>
    expectAllMatch({
      ...base,
      group: 4,
      blockSize: 16,
      parents: [null, ...Array.from({ length: 40 }, () => 0)],
      lengths: [300, ...Array.from({ length: 40 }, (_, i) => i % 7)],
      queries: Array.from({ length: 40 }, (_, i) => ({ node: i + 1 })),
      scoreMagnitude: 30
    }))

  it("causal limits of 0, partial and full on a node", () =>
    expectAllMatch({
      ...base,
      parents: [null, 0],
      lengths: [5, 70],
      queries: [{ node: 1, kvLimit: 0 }, { node: 1, kvLimit: 33 }, { node: 1, kvLimit: 70 }, { node: 1 }]
    }))

  // attention-gpu.test.ts draws its random cases from a palette of head dims. Here: the head dims that, with the
  // palette, reach every tiling the kernels choose on this device (headDimsBeyondPalette says why those are all that
  // differ; on SwiftShader, with the default flash2 level tiles, 16, 24 and 64; attention-variants.test.ts runs the
  // stacked ones), each with a KV group of its own, over a tree whose nodes hold 40, 3 and 0 tokens (a partial block,
  // an empty node). The rest only repeat a tiling, at seconds of compile each.
  it("every tiling a head dim from 8 to 128 reaches, beyond the palette", async () => {
    for (const [i, headDim] of headDimsBeyondPalette(gpu.device.limits).entries()) {
      await expectAllMatch({ ...base, headDim, group: [1, 2, 4, 8][i % 4]!, parents: [null, 0, 0], lengths: [40, 3, 0], queries: [{ node: 1 }, { node: 2 }, { node: 1 }], seed: i })
    }
  })
})

describe("attention host API", () => {
  it("a prepared plan serves several encodes (one per layer) and every buffer is freed", async () => {
    const spec: CaseSpec = { ...base, group: 2, parents: [null, 0, 0], lengths: [50, 7, 9], queries: [{ node: 1 }, { node: 2 }] }
    const first = buildCase(spec)
    // a second layer: other K/V values in the same blocks, so the same plan applies
    const kOf = (x: number) => -0.5 * x
    const vOf = (x: number) => x + 1
    const secondTree = {
      ...first.tree,
      nodes: first.tree.nodes.map((n) => ({ ...n, k: Float32Array.from(n.k, kOf), v: Float32Array.from(n.v, vOf) }))
    }
    const secondInputs = { q: first.inputs.q, kPool: first.inputs.kPool.map(kOf), vPool: first.inputs.vPool.map(vOf) }
    const kernels = await createTreeAttention(gpu.device, options(spec))
    const prepared = kernels.prepare(first.plan)
    const outputs = []
    for (const inputs of [first.inputs, secondInputs]) {
      const buffers = {
        q: uploadBuffer(gpu.device, "q", inputs.q),
        kPool: uploadBuffer(gpu.device, "k", inputs.kPool),
        vPool: uploadBuffer(gpu.device, "v", inputs.vPool),
        out: uploadBuffer(gpu.device, "out", new Float32Array(2 * 2 * 16).fill(NaN)),
        lse: uploadBuffer(gpu.device, "lse", new Float32Array(2 * 2).fill(NaN))
      }
      const encoder = gpu.device.createCommandEncoder()
      kernels.encode(encoder, prepared, buffers)
      gpu.device.queue.submit([encoder.finish()])
      outputs.push({ out: await readFloat32(gpu.device, buffers.out, 64), lse: await readFloat32(gpu.device, buffers.lse, 4) })
      for (const b of Object.values(buffers)) b.destroy()
    }
    expect(compareOutputs(outputs[0]!, referenceTreeAttention(first.tree), 2, 16, 1e-4)).toEqual([])
    expect(compareOutputs(outputs[1]!, referenceTreeAttention(secondTree), 2, 16, 1e-4)).toEqual([])
    kernels.destroy()
    expect(() => kernels.encode(gpu.device.createCommandEncoder(), prepared, {} as never)).toThrow(/destroyed/)
  })

  it("rejects a plan with another block size and shapes it cannot run", async () => {
    const kernels = await createTreeAttention(gpu.device, options(base))
    expect(() => kernels.prepare(buildCase({ ...base, blockSize: 8 }).plan)).toThrow(/blockSize/)
    kernels.destroy()
    await expect(createTreeAttention(gpu.device, { heads: 3, kvHeads: 2, headDim: 16, blockSize: 4 })).rejects.toThrow(/multiple of kvHeads/)
    await expect(createTreeAttention(gpu.device, { heads: 2, kvHeads: 2, headDim: 12, blockSize: 4 })).rejects.toThrow(/multiple of 8/)
  })
})
