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
import { MATRIX_LEVEL_ROW_MATRICES, matrixLevelProblem, matrixLevelTile } from "../src/attention/levelAttentionMatrix.wgsl.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import { flash2LevelTiles } from "../src/attention/tiling.ts"
import { createTreeAttention, type TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import { EMULATED_MATRICES, type MatrixOps, type MatrixUnits } from "../src/subgroupMatrix/matrixOps.ts"
import type { ProbeResult } from "../src/subgroupMatrix/probes.ts"
import { canopyVersion, memoryTuneCache, type TuneCache } from "../src/tune/cache.ts"
import { matrixLevelCandidates, tuneLevelTile } from "../src/tune/levelTile.ts"
import { ENGINE_LEVEL_PROBE, ENGINE_MATRIX_PROBE, recordMatrixProbe } from "../src/tune/matrixProbe.ts"
import { arbitraryCase, buildCase, compareOutputs, describeMismatches, roundCaseKv, type CaseSpec } from "./attention-fixtures.ts"
import { describeOnLavapipe, openLavapipe } from "./lavapipe.ts"

const UNITS: MatrixUnits = { config: { M: 8, N: 8, K: 8 }, subgroupSize: 32, ops: EMULATED_MATRICES }

const optionsFor = (spec: CaseSpec, units: MatrixUnits, minChunkTokens: number, rowMatrices = 1): TreeAttentionOptions => ({
  heads: spec.kvHeads * spec.group, kvHeads: spec.kvHeads, headDim: spec.headDim, blockSize: spec.blockSize, kvDtype: "f16",
  levelTile: matrixLevelTile(units, rowMatrices), matrixUnits: units, decodeMaxEntries: 0, minChunkTokens, targetWorkgroups: 64,
  poolShards: spec.seed % 2 === 1 ? spec.kvHeads : 1
})

describeOnLavapipe("the matrix level kernel on lavapipe, the matrix builtins emulated", () => {
  let gpu: GpuHandle
  beforeAll(async () => {
    gpu = await openLavapipe()
  })
  afterAll(() => gpu?.close())

  /** The mismatches of one case against the reference (empty where it agrees). */
  const mismatches = async (spec: CaseSpec, units: MatrixUnits, minChunkTokens = 32, rowMatrices = 1): Promise<string | undefined> => {
    const built = roundCaseKv(buildCase(spec), "f16")
    const kernels = await createTreeAttention(gpu.device, optionsFor(spec, units, minChunkTokens, rowMatrices))
    try {
      expect(kernels.levelTile).toEqual({ rows: 8 * rowMatrices, keys: 8, workgroupSize: 32, variant: "matrix" })
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

  it("random trees with causal limits match the float64 reference on the rounded K/V, one or two row matrices a workgroup", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryCase(bounds), fc.constantFrom(32, 64), fc.constantFrom(...MATRIX_LEVEL_ROW_MATRICES), async (spec, chunk, rowMatrices) => {
        expect(await mismatches(spec, UNITS, chunk, rowMatrices)).toBeUndefined()
      }),
      { numRuns: 10 }
    )
  })

  it("rows that see nothing, ragged row tiles, scores far apart", async () => {
    const spec: CaseSpec = {
      kvHeads: 2, group: 4, headDim: 16, blockSize: 4, parents: [null, 0, 0, null], lengths: [45, 0, 7, 0],
      queries: [{ node: 1 }, { node: 2, kvLimit: 0 }, { node: 2, kvLimit: 3 }, { node: 3 }, { node: 2 }], scoreMagnitude: 30, seed: 3
    }
    for (const rowMatrices of MATRIX_LEVEL_ROW_MATRICES) expect(await mismatches(spec, UNITS, 32, rowMatrices), `${rowMatrices} row matrices`).toBeUndefined()
  })

  it("fails the comparison when a value matrix is read the wrong way round (the check can tell)", async () => {
    const transposed: MatrixOps = { ...EMULATED_MATRICES, load: (kind, c, target, declare, source, offset, colMajor, stride) =>
      EMULATED_MATRICES.load(kind, c, target, declare, source, offset, source === "vs" ? !colMajor : colMajor, stride) }
    const spec: CaseSpec = {
      kvHeads: 1, group: 4, headDim: 16, blockSize: 4, parents: [null, 0], lengths: [40, 3], queries: [{ node: 1 }, { node: 1 }], scoreMagnitude: 5, seed: 2
    }
    for (const rowMatrices of MATRIX_LEVEL_ROW_MATRICES) expect(await mismatches(spec, { ...UNITS, ops: transposed }, 32, rowMatrices)).toMatch(/./)
  })

  const probed = (status: ProbeResult["status"], probe = ENGINE_LEVEL_PROBE, version = canopyVersion()): TuneCache => {
    const cache = memoryTuneCache()
    recordMatrixProbe(cache, gpu.device, { probe, adds: "", status }, version)
    return cache
  }

  it("is a tuner's candidate only on an f16 cache where its own probe said ok on this adapter for this version", () => {
    const shape = { heads: 4, kvHeads: 1, headDim: 16, kvDtype: "f16" as const }
    const offered = (cache: TuneCache | undefined, s: typeof shape | { heads: number; kvHeads: number; headDim: number; kvDtype: "f32" } = shape, units: MatrixUnits | string = UNITS) =>
      matrixLevelCandidates(gpu.device, s, cache, canopyVersion(), units)
    expect(offered(probed("ok"))).toEqual([8, 16].map((rows) => ({ rows, keys: 8, workgroupSize: 32, variant: "matrix" })))
    expect(offered(memoryTuneCache())).toEqual([])
    expect(offered(undefined)).toEqual([])
    for (const status of ["wrong", "refused", "skipped", "crashed", "timed out"] as const) expect(offered(probed(status)), status).toEqual([])
    // the matmul's probe is not the attention's; another version's probe does not count
    expect(offered(probed("ok", ENGINE_MATRIX_PROBE))).toEqual([])
    expect(offered(probed("ok", ENGINE_LEVEL_PROBE, "0.0.0-other"))).toEqual([])
    expect(offered(probed("ok"), { ...shape, kvDtype: "f32" })).toEqual([])
    expect(offered(probed("ok"), { ...shape, headDim: 20 })).toEqual([])
    // lavapipe has no matrix units of its own
    expect(offered(probed("ok"), shape, "the device has no chromium-experimental-subgroup-matrix")).toEqual([])
    expect(matrixLevelCandidates(gpu.device, shape, probed("ok"), canopyVersion())).toEqual([])
  })

  it("is checked and timed by the tuner beside a flash2 tile where its probe passed", async () => {
    const shape = { heads: 4, kvHeads: 1, headDim: 16, kvDtype: "f16" as const }
    const cache = probed("ok")
    const tiles = [flash2LevelTiles(16, gpu.device.limits)[0]!, ...matrixLevelCandidates(gpu.device, shape, cache, canopyVersion(), UNITS)]
    const workload = { sequences: 8, sharedTokens: 64, suffixTokens: 4 }
    const tuned = await tuneLevelTile(gpu.device, shape, { enabled: true, cache, matrixUnits: UNITS, tiles, workload, budgetMs: 120_000, minRounds: 1, maxRounds: 2 })
    expect(tuned.skipped).toEqual([])
    expect(tuned.timings.map((t) => t.name).sort()).toEqual(["flash2 128x64", "matrix 16x8", "matrix 8x8"])
  })

  it("is refused before any compile on an f32 cache, or a head dim the matrices do not divide", async () => {
    expect(matrixLevelProblem({ headDim: 16, kv: "f32", units: UNITS }, gpu.device.limits)).toMatch(/f16 KV cache/)
    expect(matrixLevelProblem({ headDim: 20, kv: "f16-native", units: UNITS }, gpu.device.limits)).toMatch(/head dim 20/)
    const spec: CaseSpec = { kvHeads: 1, group: 1, headDim: 16, blockSize: 4, parents: [null], lengths: [4], queries: [{ node: 0 }], scoreMagnitude: 1, seed: 1 }
    await expect(createTreeAttention(gpu.device, { ...optionsFor(spec, UNITS, 32), kvDtype: "f32" })).rejects.toThrow(/f16 KV cache/)
    await expect(createTreeAttention(gpu.device, { ...optionsFor(spec, UNITS, 32), levelTile: { rows: 24, keys: 8, workgroupSize: 32, variant: "matrix" } }))
      .rejects.toThrow(/is none of those its matrix units make/)
  })
})
