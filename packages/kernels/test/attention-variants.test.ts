/**
 * The level kernel's variants (levelAttention.wgsl.ts, tiling.ts LevelVariant)
 * against the float64 reference, each named explicitly, whichever is the
 * default. Every node goes to the level kernel here (decodeMaxEntries 0),
 * suffixes of one sequence too, so the variant computes every partial state
 * the merge sees; chunks are small, or span several K/V tiles, so the KV-chunk
 * split happens and the running max and sum are rescaled.
 *
 * What a flash2 tile compiles in: rows and lanes per row (1, 2, 4 or 8: with
 * one lane the scores stay in registers, with more they meet in workgroup
 * memory), keys per tile, and a lane's slice of the head dim, even or with a
 * clamped last vec4. The default tiles on SwiftShader (32 KiB) are 128×64 at
 * head dim 8 to 56, 128×32 at 64 (one lane), 64×16 at 72–128 (two lanes) and
 * 32×8 at 256 (four lanes); a tuner may pick any tile of flash2LevelTiles, so
 * a few others that reach eight lanes and uneven slices run as well. The
 * stacked variant runs the head dims that reach its tilings beyond the palette
 * (attention-edge.test.ts runs the default's). Each (tile, head dim, KV
 * storage) is a compile of seconds: the random cases draw from a small palette
 * and share the pipelines (cached per device).
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeAdapter, openGpu, type GpuHandle } from "../src/gpu/device.ts"
import type { KvDtype } from "../src/attention/kvStorage.ts"
import { referenceTreeAttention } from "../src/attention/reference.ts"
import { runTreeAttention } from "../src/attention/runAttention.ts"
import {
  findLevelTile, flash2Lanes, flash2LevelTiles, flash2Slice, type LevelTile, type LevelVariant, levelVariantOf
} from "../src/attention/tiling.ts"
import { createTreeAttention, type TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import {
  arbitraryCase, buildCase, compareOutputs, describeMismatches, HEAD_DIM_PALETTE, headDimsBeyondPalette, roundCaseKv,
  type CaseBounds, type CaseSpec
} from "./attention-fixtures.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
  console.log(`adapter: ${describeAdapter(gpu.adapter)}`)
})
afterAll(() => gpu?.close())

const TOLERANCE = 1e-4

interface Run {
  readonly levelVariant: LevelVariant
  readonly kvDtype?: KvDtype
  /** a tile of the variant other than its default */
  readonly levelTile?: LevelTile
  /** shortest KV chunk (default 32): longer chunks span several K/V tiles */
  readonly minChunkTokens?: number
}

const optionsFor = (spec: CaseSpec, run: Run): TreeAttentionOptions => ({
  heads: spec.kvHeads * spec.group,
  kvHeads: spec.kvHeads,
  headDim: spec.headDim,
  blockSize: spec.blockSize,
  kvDtype: run.kvDtype ?? "f32",
  levelVariant: run.levelVariant,
  ...(run.levelTile === undefined ? {} : { levelTile: run.levelTile }),
  decodeMaxEntries: 0,
  minChunkTokens: run.minChunkTokens ?? 32,
  targetWorkgroups: 64,
  // odd seeds: one pool shard per KV head, bound a shard at a time
  poolShards: spec.seed % 2 === 1 ? spec.kvHeads : 1
})

/** Runs one case through the level kernel of `run`; throws a readable report where it disagrees with the reference. */
const check = async (spec: CaseSpec, run: Run): Promise<void> => {
  const kvDtype = run.kvDtype ?? "f32"
  const built = roundCaseKv(buildCase(spec), kvDtype)
  const kernels = await createTreeAttention(gpu.device, optionsFor(spec, run))
  try {
    const tile = kernels.levelTile!
    expect(levelVariantOf(tile)).toBe(run.levelVariant)
    const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
    const problems = compareOutputs(result, referenceTreeAttention(built.tree), built.tree.heads, spec.headDim, TOLERANCE)
    if (problems.length > 0) {
      throw new Error(`${run.levelVariant} ${tile.rows}x${tile.keys}, ${kvDtype} KV (${kernels.kvStorage}): ${describeMismatches(problems)}`)
    }
  } finally {
    kernels.destroy()
  }
}

/** Head dims of the random cases: flash2 with one lane a row (8: 64 keys a tile; 40: 10 vec4s) and two (128). */
const RANDOM_HEAD_DIMS: ReadonlyArray<number> = [8, 40, 128]

const BOUNDS: CaseBounds = {
  maxDepth: 4,
  maxFanOut: 8,
  maxNodes: 12,
  maxLength: 200,
  maxSequences: 10,
  maxWork: 2_000_000,
  causal: false,
  headDims: RANDOM_HEAD_DIMS,
  // each group is a decode-kernel compile too (made with every attention object)
  groups: [1, 4, 8]
}

/** Random runs per variant: flash2 is the new code; stacked is today's kernel, long tested by attention-gpu.test.ts. */
const RUNS: Record<"stacked" | "flash2", { readonly f32: number; readonly causal: number; readonly f16: number }> = {
  flash2: { f32: 20, causal: 15, f16: 8 },
  stacked: { f32: 8, causal: 6, f16: 4 }
}

const base: CaseSpec = {
  kvHeads: 1, group: 1, headDim: 16, blockSize: 4, parents: [null], lengths: [1], queries: [{ node: 0 }], scoreMagnitude: 5, seed: 7
}

const chunks = fc.constantFrom(32, 128)

describe.each(["flash2", "stacked"] as const)("%s level attention vs the float64 reference", (levelVariant) => {
  const runs = RUNS[levelVariant]

  it("random trees, f32 KV", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryCase(BOUNDS), chunks, (spec, minChunkTokens) => check(spec, { levelVariant, minChunkTokens })),
      { numRuns: runs.f32 }
    )
  })

  it("random trees with causal kv limits (prefill rows), f32 KV", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryCase({ ...BOUNDS, causal: true }), chunks, (spec, minChunkTokens) => check(spec, { levelVariant, minChunkTokens })),
      { numRuns: runs.causal }
    )
  })

  it("random trees, f16 KV (packed words where the device has no shader-f16)", async () => {
    const bounds = { ...BOUNDS, causal: true, headDims: [8, 128], groups: [1, 4] }
    await fc.assert(
      fc.asyncProperty(arbitraryCase(bounds), chunks, (spec, minChunkTokens) => check(spec, { levelVariant, kvDtype: "f16", minChunkTokens })),
      { numRuns: runs.f16 }
    )
  })

  it("empty segments give (0, −∞): empty nodes, empty paths, causal limits of 0 beside partial and full ones", async () => {
    const spec: CaseSpec = {
      ...base, headDim: 40, group: 4, parents: [null, 0, null, 2, 2], lengths: [0, 0, 70, 0, 9],
      queries: [{ node: 1 }, { node: 3 }, { node: 0 }, { node: 4, kvLimit: 0 }, { node: 4, kvLimit: 5 }, { node: 2, kvLimit: 0 }, { node: 4 }]
    }
    await check(spec, { levelVariant })
    const kernels = await createTreeAttention(gpu.device, optionsFor(spec, { levelVariant }))
    try {
      const built = buildCase(spec)
      const result = await runTreeAttention(gpu.device, kernels, built.plan, built.inputs)
      const heads = 4
      // sequences 0 and 2 see no token at all
      for (const s of [0, 2]) {
        expect([...result.lse.subarray(s * heads, (s + 1) * heads)]).toEqual(new Array(heads).fill(-Infinity))
        expect([...result.out.subarray(s * heads * 40, (s + 1) * heads * 40)]).toEqual(new Array(heads * 40).fill(0))
      }
    } finally {
      kernels.destroy()
    }
  })

  it("GQA 8:1 over two KV heads, many rows sharing one long node (several row tiles, chunks of several K/V tiles)", () =>
    check({
      ...base, headDim: 40, kvHeads: 2, group: 8, blockSize: 16,
      parents: [null, ...Array.from({ length: 20 }, () => 0)],
      lengths: [300, ...Array.from({ length: 20 }, (_, i) => i % 5)],
      queries: Array.from({ length: 20 }, (_, i) => ({ node: i + 1, ...(i % 3 === 0 ? { kvLimit: i % 5 } : {}) })),
      scoreMagnitude: 30
    }, { levelVariant, minChunkTokens: 128 }))
})

describe("flash2 tiles", () => {
  it("are the ones the header names on SwiftShader's limits", () => {
    const limits = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 128 } as GPUSupportedLimits
    const first = (d: number) => findLevelTile(d, limits, "flash2")!
    expect([8, 56, 64, 72, 128, 256].map((d) => `${first(d).rows}x${first(d).keys}/${flash2Lanes(first(d))}`))
      .toEqual(["128x64/1", "128x64/1", "128x32/1", "64x16/2", "64x16/2", "32x8/4"])
  })

  it("head dims 64 and 256 (128×32 with one lane; 32×8 with four)", async () => {
    for (const [i, headDim] of [64, 256].entries()) {
      await check(
        { ...base, headDim, group: [2, 4][i]!, blockSize: 16, parents: [null, 0, 0], lengths: [75, 3, 0], queries: [{ node: 1 }, { node: 2 }, { node: 1, kvLimit: 2 }], seed: i },
        { levelVariant: "flash2", minChunkTokens: 128 }
      )
    }
  })

  it("a tuner may pick, random trees (uneven slices over four and eight lanes, 16 rows a tile)", async () => {
    // 10 vec4s of head dim 40 over 4 lanes (3, 3, 2, 2) and over 8 (2, 2, 1, …)
    const tiles = flash2LevelTiles(40, gpu.device.limits).filter((t) => (t.rows === 32 && t.keys === 32) || (t.rows === 16 && t.keys === 8))
    expect(tiles.map((t) => `${t.rows}x${t.keys}: ${flash2Slice(40, t) * flash2Lanes(t)} slots for 10 vec4s`))
      .toEqual(["32x32: 12 slots for 10 vec4s", "16x8: 16 slots for 10 vec4s"])
    const bounds = { ...BOUNDS, causal: true, headDims: [40], groups: [1, 4] }
    await fc.assert(
      fc.asyncProperty(arbitraryCase(bounds), fc.nat(), chunks, (spec, pick, minChunkTokens) =>
        check(spec, { levelVariant: "flash2", levelTile: tiles[pick % tiles.length]!, minChunkTokens })),
      { numRuns: 10 }
    )
  })

  it("that do not fit, and variants that do not exist, are refused before any compile", async () => {
    const tooBig: LevelTile = { rows: 64, keys: 64, workgroupSize: 128, variant: "flash2" }
    await expect(createTreeAttention(gpu.device, optionsFor({ ...base, headDim: 256 }, { levelVariant: "flash2", levelTile: tooBig })))
      .rejects.toThrow(/does not fit/)
    await expect(createTreeAttention(gpu.device, optionsFor(base, { levelVariant: "fast" as LevelVariant }))).rejects.toThrow(/levelVariant/)
  })
})

describe("stacked tiles", () => {
  // the head dims that reach the stacked tilings the palette does not (on SwiftShader 16, 96, 104 and 120)
  it("every tiling a head dim from 8 to 128 reaches, beyond the palette", async () => {
    for (const [i, headDim] of headDimsBeyondPalette(gpu.device.limits, HEAD_DIM_PALETTE, "stacked").entries()) {
      await check(
        { ...base, headDim, group: [1, 2, 4, 8][i % 4]!, parents: [null, 0, 0], lengths: [40, 3, 0], queries: [{ node: 1 }, { node: 2 }, { node: 1, kvLimit: 20 }], seed: i },
        { levelVariant: "stacked" }
      )
    }
  })
})
