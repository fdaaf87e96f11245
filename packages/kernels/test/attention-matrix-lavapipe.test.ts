/**
 * The matrix level kernel (levelAttentionMatrix.wgsl.ts) against the float64
 * reference on lavapipe, the matrix builtins emulated in plain WGSL
 * (EMULATED_MATRICES): everything of the kernel but the builtins themselves —
 * the work item, the paged K/V staging as f16, the masks, the split of Q and
 * P, both walks over the chunk, the outputs — on random trees. Every node goes
 * to the level kernel (decodeMaxEntries 0), and chunks span several key tiles.
 * The emulated 8×8×8 config keeps the compile short; the device's own
 * builtins are checked by the GPU entry's probes and by the tuner, which
 * checks every candidate before timing it.
 */
import fc from "fast-check"
import { afterAll, beforeAll, expect, it } from "vitest"
import type { GpuHandle } from "../src/gpu/device.ts"
import { matrixLevelProblem, matrixLevelTile } from "../src/attention/levelAttentionMatrix.wgsl.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { createTreeAttention, type TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import { EMULATED_MATRICES, type MatrixOps, type MatrixUnits } from "../src/subgroupMatrix/matrixOps.ts"
import { arbitraryCase, buildCase, compareOutputs, describeMismatches, roundCaseKv, type CaseSpec } from "./attention-fixtures.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

const UNITS: MatrixUnits = { config: { M: 8, N: 8, K: 8 }, subgroupSize: 32, ops: EMULATED_MATRICES }

const optionsFor = (spec: CaseSpec, units: MatrixUnits, minChunkTokens: number): TreeAttentionOptions => ({
  heads: spec.kvHeads * spec.group, kvHeads: spec.kvHeads, headDim: spec.headDim, blockSize: spec.blockSize, kvDtype: "f16",
  levelTile: matrixLevelTile(units), matrixUnits: units, decodeMaxEntries: 0, minChunkTokens, targetWorkgroups: 64,
  poolShards: spec.seed % 2 === 1 ? spec.kvHeads : 1
})

describeOnLavapipe("the matrix level kernel on lavapipe, the matrix builtins emulated", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  /** The mismatches of one case against the reference (empty where it agrees). */
  const mismatches = async (spec: CaseSpec, units: MatrixUnits, minChunkTokens = 32): Promise<string | undefined> => {
    const built = roundCaseKv(buildCase(spec), "f16")
    const kernels = await createTreeAttention(gpu.device, optionsFor(spec, units, minChunkTokens))
    try {
      expect(kernels.levelTile).toEqual({ rows: 8, keys: 8, workgroupSize: 32, variant: "matrix" })
      const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
      const problems = compareOutputs(result, referenceTreeAttention(built.tree), built.tree.heads, spec.headDim, 1e-4)
      return problems.length === 0 ? undefined : describeMismatches(problems)
    } finally {
      kernels.destroy()
    }
  }

  const bounds = {
    maxDepth: 4, maxFanOut: 8, maxNodes: 12, maxLength: 120, maxSequences: 10, maxWork: 1_000_000,
    causal: true, headDims: [16, 32], groups: [1, 4]
  }

  it("random trees with causal limits match the float64 reference on the rounded K/V", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryCase(bounds), fc.constantFrom(32, 64), async (spec, chunk) => {
        expect(await mismatches(spec, UNITS, chunk)).toBeUndefined()
      }),
      { numRuns: 8 }
    )
  })

  it("rows that see nothing, ragged row tiles, scores far apart", async () => {
    const spec: CaseSpec = {
      kvHeads: 2, group: 4, headDim: 16, blockSize: 4, parents: [null, 0, 0, null], lengths: [45, 0, 7, 0],
      queries: [{ node: 1 }, { node: 2, kvLimit: 0 }, { node: 2, kvLimit: 3 }, { node: 3 }, { node: 2 }], scoreMagnitude: 30, seed: 3
    }
    expect(await mismatches(spec, UNITS)).toBeUndefined()
  })

  it("fails the comparison when a value matrix is read the wrong way round (the check can tell)", async () => {
    const transposed: MatrixOps = { ...EMULATED_MATRICES, load: (kind, c, target, declare, source, offset, colMajor, stride) =>
      EMULATED_MATRICES.load(kind, c, target, declare, source, offset, source === "vs" ? !colMajor : colMajor, stride) }
    const spec: CaseSpec = {
      kvHeads: 1, group: 4, headDim: 16, blockSize: 4, parents: [null, 0], lengths: [40, 3], queries: [{ node: 1 }, { node: 1 }], scoreMagnitude: 5, seed: 2
    }
    expect(await mismatches(spec, { ...UNITS, ops: transposed })).toMatch(/./)
  })

  it("is refused before any compile on an f32 cache, or a head dim the matrices do not divide", async () => {
    expect(matrixLevelProblem({ headDim: 16, kv: "f32", units: UNITS }, gpu.device.limits)).toMatch(/f16 KV cache/)
    expect(matrixLevelProblem({ headDim: 20, kv: "f16-native", units: UNITS }, gpu.device.limits)).toMatch(/head dim 20/)
    const spec: CaseSpec = { kvHeads: 1, group: 1, headDim: 16, blockSize: 4, parents: [null], lengths: [4], queries: [{ node: 0 }], scoreMagnitude: 1, seed: 1 }
    await expect(createTreeAttention(gpu.device, { ...optionsFor(spec, UNITS, 32), kvDtype: "f32" })).rejects.toThrow(/f16 KV cache/)
    await expect(createTreeAttention(gpu.device, { ...optionsFor(spec, UNITS, 32), levelTile: { rows: 16, keys: 8, workgroupSize: 32, variant: "matrix" } }))
      .rejects.toThrow(/not the one its matrix units make/)
  })
})
