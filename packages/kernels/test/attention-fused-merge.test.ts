/**
 * The merge fused into the decode kernel: where each sequence ends on one
 * decode item (its own leaf in one chunk, as in sampling), that item merges
 * the sequence's states and the plan needs no merge pass. Fused and unfused
 * runs of the same plans must both match the float64 reference, give the same
 * answers as each other, and the fused ones must drop the merge's dispatch; a
 * plan that does not qualify, or a device that cannot bind the fused kernel,
 * takes the merge pass.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createTreeAttention, type TreeAttention } from "../src/attention/treeAttention.ts"
import { FUSED_DECODE_STORAGE_BUFFERS } from "../src/attention/workItem.wgsl.ts"
import { arbitraryCase, buildCase, caseAttentionOptions, compareOutputs, describeMismatches, type CaseBounds, type CaseSpec } from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const TOLERANCE = 1e-4

/** odd seeds: one pool shard per KV head, each bound on its own */
const optionsOf = (spec: CaseSpec) => caseAttentionOptions(spec, { poolShards: spec.seed % 2 === 1 ? spec.kvHeads : 1 })

interface Run {
  readonly out: Float32Array
  readonly lse: Float32Array
  readonly mergeFused: boolean
  readonly dispatches: number
}

/** One case on `attention`, checked against float64; what it gave and how it ran. */
const run = async (attention: TreeAttention, spec: CaseSpec, label: string): Promise<Run> => {
  const built = buildCase(spec)
  const mergeFused = attention.prepare(built.plan)
  const fused = mergeFused.mergeFused
  mergeFused.destroy()
  const before = attention.counters.dispatches
  const result = await runTreeAttention(gpu.device, attention, built.plan, built.inputs)
  const problems = compareOutputs(result, referenceTreeAttention(built.tree), built.tree.heads, spec.headDim, TOLERANCE)
  if (problems.length > 0) throw new Error(`${label}: ${describeMismatches(problems)}`)
  return { ...result, mergeFused: fused, dispatches: attention.counters.dispatches - before }
}

/** Whether every sequence of `spec` sits alone on a node of its own, whose visible tokens fit one chunk of `chunkTokens`. */
const endsAlone = (spec: CaseSpec): boolean =>
  spec.queries.length > 0 &&
  spec.queries.every((q, i) => spec.lengths[q.node]! > 0 && spec.queries.every((o, j) => j === i || o.node !== q.node))

/** A sampling run's tree: a prefix, two problems under it, samples on leaves of their own (and one with its leaf still empty when `emptyLeaf`). */
const samplingTree = (emptyLeaf: boolean): CaseSpec => ({
  kvHeads: 2, group: 4, headDim: 40, blockSize: 16,
  parents: [null, 0, 0, 1, 1, 2, 2, 2],
  lengths: [70, 20, 33, 3, 1, 2, 5, emptyLeaf ? 0 : 4],
  queries: [{ node: 3 }, { node: 4 }, { node: 5 }, { node: 6 }, { node: 7 }],
  scoreMagnitude: 10,
  seed: 3
})

const BOUNDS: CaseBounds = {
  maxDepth: 4, maxFanOut: 6, maxNodes: 12, maxLength: 200, maxSequences: 10, maxWork: 2_000_000, causal: false, headDims: [8, 40]
}

describe("the merge fused into the decode kernel", () => {
  let fused: Map<string, TreeAttention>
  let unfused: Map<string, TreeAttention>
  const kernels = async (cache: Map<string, TreeAttention>, spec: CaseSpec, fuseMerge: boolean) => {
    const options = optionsOf(spec)
    const key = JSON.stringify(options)
    let attention = cache.get(key)
    if (attention === undefined) cache.set(key, (attention = await createTreeAttention(gpu.device, { ...options, fuseMerge })))
    return attention
  }
  beforeAll(() => {
    fused = new Map()
    unfused = new Map()
  })
  afterAll(() => {
    for (const a of [...fused.values(), ...unfused.values()]) a.destroy()
  })

  it("merges in the decode items of a sampling tree, one dispatch fewer, the answers of the merge pass", async () => {
    const spec = samplingTree(false)
    const a = await run(await kernels(fused, spec, true), spec, "fused")
    const b = await run(await kernels(unfused, spec, false), spec, "unfused")
    expect([a.mergeFused, b.mergeFused]).toEqual([true, false])
    expect(a.dispatches).toBe(b.dispatches - 1)
    expect(Array.from(a.out)).toEqual(Array.from(b.out))
    expect(Array.from(a.lse)).toEqual(Array.from(b.lse))
  })

  it("takes the merge pass where a sample's leaf is still empty", async () => {
    const spec = samplingTree(true)
    const a = await run(await kernels(fused, spec, true), spec, "fused")
    expect(a.mergeFused).toBe(false)
  })

  it("random trees: fused where every sequence ends alone on its node, right either way, the same answers", async () => {
    let fusedPlans = 0
    await fc.assert(fc.asyncProperty(arbitraryCase(BOUNDS), async (spec) => {
      const a = await run(await kernels(fused, spec, true), spec, "fused")
      const b = await run(await kernels(unfused, spec, false), spec, "unfused")
      expect(b.mergeFused).toBe(false)
      // alone on its node, a sequence has one decode item unless its node is chunked
      if (!endsAlone(spec)) expect(a.mergeFused).toBe(false)
      if (a.mergeFused) {
        fusedPlans++
        expect(a.dispatches).toBe(b.dispatches - 1)
      }
      expect(Array.from(a.out)).toEqual(Array.from(b.out))
      expect(Array.from(a.lse)).toEqual(Array.from(b.lse))
    }), { numRuns: 30, seed: 11 })
    expect(fusedPlans).toBeGreaterThan(0)
  })

  it("is refused, saying why, on a device that binds fewer storage buffers, and left out there by default", async () => {
    // a device at WebGPU's default limits: 8 storage buffers per shader stage
    const adapter = await gpu.instance.requestAdapter()
    const device = await adapter!.requestDevice()
    try {
      expect(device.limits.maxStorageBuffersPerShaderStage).toBeLessThan(FUSED_DECODE_STORAGE_BUFFERS)
      const spec = samplingTree(false)
      await expect(createTreeAttention(device, { ...optionsOf(spec), fuseMerge: true })).rejects.toThrow(
        `attention: fuseMerge needs ${FUSED_DECODE_STORAGE_BUFFERS} storage buffers per shader stage; this device binds ${device.limits.maxStorageBuffersPerShaderStage}`
      )
      const attention = await createTreeAttention(device, optionsOf(spec))
      try {
        const prepared = attention.prepare(buildCase(spec).plan)
        expect(prepared.mergeFused).toBe(false)
        prepared.destroy()
      } finally {
        attention.destroy()
      }
    } finally {
      device.destroy()
    }
  })
})
