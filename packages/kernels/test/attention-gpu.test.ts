import fc from "fast-check"
import { afterAll, beforeAll, describe, it } from "vitest"
import { describeAdapter, openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createPagedDecode, createTreeAttention, type AttentionKernels } from "../src/attention/treeAttention.ts"
import { arbitraryCase, buildCase, compareOutputs, describeMismatches, HEAD_DIM_PALETTE, type CaseBounds, type CaseSpec } from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
  console.log(`adapter: ${describeAdapter(gpu.adapter)}`)
})
afterAll(() => gpu?.close())

const TOLERANCE = 1e-4

type Method = "hydragen" | "baseline"

const kernelsFor = (method: Method, spec: CaseSpec): Promise<AttentionKernels> => {
  const options = {
    heads: spec.kvHeads * spec.group,
    kvHeads: spec.kvHeads,
    headDim: spec.headDim,
    blockSize: spec.blockSize,
    // small chunks and targets: the tests' trees are small, chunking must still happen
    minChunkTokens: 32,
    targetWorkgroups: 64,
    // odd seeds lay the pools out in one shard per KV head: bound a shard at a time
    poolShards: poolShardsOf(spec)
  }
  return method === "hydragen" ? createTreeAttention(gpu.device, options) : createPagedDecode(gpu.device, options)
}

const poolShardsOf = (spec: CaseSpec): number => (spec.seed % 2 === 1 ? spec.kvHeads : 1)

/** Runs one case on the GPU and throws a readable report when it disagrees with the float64 oracle. */
const check = async (method: Method, spec: CaseSpec): Promise<void> => {
  const built = buildCase(spec)
  const kernels = await kernelsFor(method, spec)
  try {
    const gpuResult = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
    const problems = compareOutputs(gpuResult, referenceTreeAttention(built.tree), built.tree.heads, spec.headDim, TOLERANCE)
    if (problems.length > 0) throw new Error(`${method}, ${poolShardsOf(spec)} pool shard(s): ${describeMismatches(problems)}`)
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

describe.each<Method>(["hydragen", "baseline"])("%s attention on the GPU vs the float64 reference", (method) => {
  it("random trees", async () => {
    await fc.assert(fc.asyncProperty(arbitraryCase(DECODE), (spec) => check(method, spec)), { numRuns: 25 })
  })

  it("random trees with causal kv limits", async () => {
    await fc.assert(fc.asyncProperty(arbitraryCase(CAUSAL), (spec) => check(method, spec)), { numRuns: 20 })
  })
})
