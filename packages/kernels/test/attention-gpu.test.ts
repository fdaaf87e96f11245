import fc from "fast-check"
import { afterAll, beforeAll, describe, it } from "vitest"
import { describeAdapter, openGpu, type GpuHandle } from "../src/gpu/device.ts"
import type { KvDtype } from "../src/attention/kvStorage.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createPagedDecode, createTreeAttention, type AttentionKernels } from "../src/attention/treeAttention.ts"
import {
  arbitraryCase, buildCase, caseAttentionOptions, compareOutputs, describeMismatches, HEAD_DIM_PALETTE, roundCaseKv, type CaseBounds, type CaseSpec
} from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
  console.log(`adapter: ${describeAdapter(gpu.adapter)}`)
})
afterAll(() => gpu?.close())

const TOLERANCE = 1e-4

type Method = "hydragen" | "baseline"

const kernelsFor = (method: Method, spec: CaseSpec, kvDtype: KvDtype): Promise<AttentionKernels> => {
  // odd seeds lay the pools out in one shard per KV head: bound a shard at a time
  const options = caseAttentionOptions(spec, { kvDtype, poolShards: poolShardsOf(spec) })
  return method === "hydragen" ? createTreeAttention(gpu.device, options) : createPagedDecode(gpu.device, options)
}

const poolShardsOf = (spec: CaseSpec): number => (spec.seed % 2 === 1 ? spec.kvHeads : 1)

/**
 * Runs one case on the GPU and throws a readable report when it disagrees with
 * the float64 oracle. With f16 KV the reference attends the same f16-rounded
 * K/V the pools hold, so the f32 tolerance applies: only storage is rounded.
 */
const check = async (method: Method, spec: CaseSpec, kvDtype: KvDtype = "f32"): Promise<void> => {
  const built = roundCaseKv(buildCase(spec), kvDtype)
  const kernels = await kernelsFor(method, spec, kvDtype)
  try {
    const gpuResult = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
    const problems = compareOutputs(gpuResult, referenceTreeAttention(built.tree), built.tree.heads, spec.headDim, TOLERANCE)
    if (problems.length > 0) {
      throw new Error(`${method}, ${kvDtype} KV (${kernels.kvStorage}), ${poolShardsOf(spec)} pool shard(s): ${describeMismatches(problems)}`)
    }
  } finally {
    kernels.destroy()
  }
}

const DECODE: CaseBounds = {
  maxDepth: 4,
  maxFanOut: 8,
  maxNodes: 14,
  maxLength: 300,
  maxSequences: 10,
  maxWork: 3_000_000,
  causal: false,
  headDims: HEAD_DIM_PALETTE
}
const CAUSAL: CaseBounds = { ...DECODE, causal: true }

/**
 * The f16-KV variant changes only how the kernels load K/V (kvStorage.ts):
 * the same vec4 indices, read as two u32 words instead of one vec4f. What can
 * go wrong there is addressing — shard offsets and sizes at 2 bytes an
 * element, block and slot strides, the vec4s of a head row — not the tiling
 * or the GQA stacking the f32 runs cover. So it runs fewer cases, and to
 * compile fewer pipelines draws from two head dims that between them reach
 * both level tiles' row counts (128 and 64) and decode lanes holding one vec4
 * and several, and from groups 1 and 4 (GQA); shards (odd seeds) and block
 * sizes are drawn as for f32.
 */
const F16_HEAD_DIMS: ReadonlyArray<number> = [8, 128]
const RUNS: Record<KvDtype, { readonly decode: number; readonly causal: number; readonly bounds: Partial<CaseBounds> }> = {
  f32: { decode: 25, causal: 20, bounds: {} },
  f16: { decode: 10, causal: 6, bounds: { headDims: F16_HEAD_DIMS, groups: [1, 4] } }
}

/** For f16: the combinations a few random runs could miss — GQA 4 with shards and block size 1, and a deep tree at block size 16. */
const F16_EXAMPLES: ReadonlyArray<CaseSpec> = [
  { kvHeads: 2, group: 4, headDim: 128, blockSize: 1, parents: [null, 0, 0, 1], lengths: [37, 5, 70, 3], queries: [{ node: 3 }, { node: 2 }, { node: 3 }, { node: 1 }], scoreMagnitude: 20, seed: 1 },
  { kvHeads: 2, group: 1, headDim: 8, blockSize: 16, parents: [null, 0, 1, 1], lengths: [100, 33, 16, 0], queries: [{ node: 2 }, { node: 3 }, { node: 2 }], scoreMagnitude: 5, seed: 4 }
]

describe.each<[Method, KvDtype]>([
  ["hydragen", "f32"],
  ["baseline", "f32"],
  ["hydragen", "f16"],
  ["baseline", "f16"]
])("%s attention with %s KV on the GPU vs the float64 reference", (method, kvDtype) => {
  const runs = RUNS[kvDtype]
  const examples = kvDtype === "f16" ? { examples: F16_EXAMPLES.map((spec) => [spec] as [CaseSpec]) } : {}
  it("random trees", async () => {
    await fc.assert(fc.asyncProperty(arbitraryCase({ ...DECODE, ...runs.bounds }), (spec) => check(method, spec, kvDtype)), {
      numRuns: runs.decode,
      ...examples
    })
  })

  it("random trees with causal kv limits", async () => {
    await fc.assert(fc.asyncProperty(arbitraryCase({ ...CAUSAL, ...runs.bounds }), (spec) => check(method, spec, kvDtype)), {
      numRuns: runs.causal
    })
  })
})
