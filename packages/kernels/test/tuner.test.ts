import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import fc from "fast-check"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { type GpuAdapterSummary } from "../src/gpu/adapters.ts"
import { openGpu, type GpuHandle } from "../src/gpu/device.ts"
import { sharedComputePipeline } from "../src/gpu/pipelineCache.ts"
import { bindBuffers, createStorageBuffer, readFloat32, uploadBuffer, wgsl } from "../src/gpu/resources.ts"
import {
  DEFAULT_LEVEL_VARIANT, findLevelTile, flash2LevelTiles, levelTileCandidates, levelTileFits, levelVariantOf, type LevelTile
} from "../src/attention/tiling.ts"
import {
  canopyCacheDir, canopyVersion, fileTuneCache, memoryTuneCache, parseTuneCache, TUNE_CACHE_FILE, type TuneCache, type TuneKey, tuneKeyText
} from "../src/tune/cache.ts"
import { attentionMismatch, levelTileName, probeLevelTile, tuneLevelTile } from "../src/tune/levelTile.ts"
import { defaultPrefillCandidates, layerProjections, tuneMatmul } from "../src/tune/matmul.ts"
import { ENGINE_MATRIX_PROBE, matrixProbeStatus, recordMatrixProbe } from "../src/tune/matrixProbe.ts"
import { defaultVariant } from "../src/model/common.ts"
import { defaultMatmulChoice, MATMUL_CANDIDATES, MATRIX_MATMUL } from "../src/model/matmul.ts"
import { deviceMatrixUnits, type MatrixUnits } from "../src/subgroupMatrix/matrixOps.ts"
import type { WeightStorage } from "../src/model/weightType.ts"
import { EMULATED_MATRICES } from "../src/subgroupMatrix/matrixOps.ts"
import type { ProbeResult } from "../src/subgroupMatrix/probes.ts"
import {
  type CandidateTrial, describeTuneProgress, tune, type TuneCandidate, TuneNoValidCandidate, type TuneProgress, tuningFromEnv
} from "../src/tune/tuner.ts"

let gpu: GpuHandle
beforeAll(async () => {
  gpu = await openGpu()
})
afterAll(() => gpu?.close())

const folders: Array<string> = []
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "canopy-tune-"))
  folders.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of folders) rmSync(dir, { recursive: true, force: true })
})

const ELEMENTS = 256

/**
 * y = factor · x over ELEMENTS values; `extraWork` adds a loop of sines per
 * element written to a scratch buffer, which leaves y as it is and makes the
 * kernel deliberately slower.
 */
const scaleKernel = (factor: number, extraWork: number) => wgsl`
  @group(0) @binding(0) var<storage, read> x: array<f32>;
  @group(0) @binding(1) var<storage, read_write> y: array<f32>;
  @group(0) @binding(2) var<storage, read_write> scratch: array<f32>;
  @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
    let i = id.x;
    if (i >= ${ELEMENTS}u) { return; }
    var s = 0.0;
    for (var k = 0u; k < ${extraWork}u; k++) { s += sin(x[i] + f32(k)); }
    scratch[i] = s;
    y[i] = ${factor.toFixed(1)} * x[i];
  }`

interface Counts {
  builds: number
  encodes: number
}

/** A candidate of the scale kernel, checked against y = 2x computed in float64. */
const scaleCandidate = (name: string, code: string, counts: Counts): TuneCandidate<string> => ({
  name,
  value: name,
  build: async (): Promise<CandidateTrial> => {
    counts.builds++
    const pipeline = await sharedComputePipeline(gpu.device, `tune-test-${name}`, code)
    const input = Float32Array.from({ length: ELEMENTS }, (_, i) => Math.sin(i) * 3)
    const x = uploadBuffer(gpu.device, "tune x", input)
    const y = createStorageBuffer(gpu.device, "tune y", ELEMENTS * 4)
    const scratch = createStorageBuffer(gpu.device, "tune scratch", ELEMENTS * 4)
    const group = bindBuffers(gpu.device, pipeline, [x, y, scratch])
    const run = (encoder: GPUCommandEncoder) => {
      const pass = encoder.beginComputePass()
      pass.setPipeline(pipeline)
      pass.setBindGroup(0, group)
      pass.dispatchWorkgroups(ELEMENTS / 64)
      pass.end()
    }
    return {
      check: async () => {
        const encoder = gpu.device.createCommandEncoder()
        run(encoder)
        gpu.device.queue.submit([encoder.finish()])
        const got = await readFloat32(gpu.device, y, ELEMENTS)
        const bad = input.findIndex((v, i) => Math.abs(got[i]! - 2 * v) > 1e-6 * Math.max(1, Math.abs(2 * v)))
        return bad < 0 ? undefined : `y[${bad}] = ${got[bad]}, expected ${2 * input[bad]!}`
      },
      encode: (encoder) => {
        counts.encodes++
        run(encoder)
      },
      destroy: () => [x, y, scratch].forEach((b) => b.destroy())
    }
  }
})

const SLOW = scaleKernel(2, 4000)
const FAST = scaleKernel(2, 0)

/** The default (first) is the slow one, so a pick of "fast" is the tuner's doing. */
const task = (counts: Record<string, Counts>, extra: ReadonlyArray<TuneCandidate<string>> = []) => ({
  kernel: "tune-test-scale",
  shape: { elements: ELEMENTS },
  candidates: [scaleCandidate("slow", SLOW, counts["slow"]!), scaleCandidate("fast", FAST, counts["fast"]!), ...extra]
})

const freshCounts = (...names: ReadonlyArray<string>): Record<string, Counts> =>
  Object.fromEntries(names.map((n) => [n, { builds: 0, encodes: 0 }]))

const silentFileCache = (dir: string, warnings: Array<string> = []): TuneCache => fileTuneCache({ dir, warn: (t) => void warnings.push(t) })

describe("the tuner", () => {
  it("picks the faster of two candidates, skips wrong and broken ones, and reports each step", async () => {
    const counts = freshCounts("slow", "fast", "wrong", "broken")
    const events: Array<TuneProgress> = []
    const choice = await tune(gpu.device, task(counts, [
      scaleCandidate("wrong", scaleKernel(3, 0), counts["wrong"]!),
      scaleCandidate("broken", "fn main( {", counts["broken"]!)
    ]), { enabled: true, cache: memoryTuneCache(), onProgress: (e) => void events.push(e) })
    expect(choice.name).toBe("fast")
    expect(choice.how).toBe("measured")
    expect(choice.timings[0]!.name).toBe("fast")
    expect(choice.timings.find((t) => t.name === "slow")!.medianMs).toBeGreaterThan(choice.timings[0]!.medianMs)
    expect(choice.skipped.map((s) => s.name).sort()).toEqual(["broken", "wrong"])
    expect(choice.skipped.find((s) => s.name === "wrong")!.reason).toMatch(/^wrong results: y\[1\]/)
    expect(choice.skipped.find((s) => s.name === "broken")!.reason).toMatch(/^does not build: /)
    // a skipped candidate is never timed
    expect(counts["wrong"]!.encodes).toBe(0)
    expect(counts["fast"]!.encodes).toBeGreaterThan(0)
    expect(choice.measurements).toBeGreaterThan(0)
    expect(events.map((e) => e._tag)).toContain("Skipped")
    expect(events.at(-1)).toMatchObject({ _tag: "Chosen", choice: "fast", how: "measured" })
    for (const e of events) expect(describeTuneProgress(e)).toContain("tune-test-scale")
  })

  it("keeps the choice in CANOPY_CACHE_DIR's file: a second run builds and times nothing", async () => {
    const dir = tempDir()
    const saved = process.env["CANOPY_CACHE_DIR"]
    process.env["CANOPY_CACHE_DIR"] = dir
    try {
      const first = freshCounts("slow", "fast")
      expect((await tune(gpu.device, task(first), { enabled: true })).how).toBe("measured")
      const file = parseTuneCache(readFileSync(join(dir, TUNE_CACHE_FILE), "utf8"))
      expect("entries" in file && [...file.entries.values()].map((r) => r.choice)).toEqual(["fast"])

      const second = freshCounts("slow", "fast")
      const again = await tune(gpu.device, task(second), { enabled: true })
      expect(again).toMatchObject({ name: "fast", how: "cached", measurements: 0 })
      expect(second["slow"]!.builds + second["fast"]!.builds + second["slow"]!.encodes + second["fast"]!.encodes).toBe(0)
    } finally {
      if (saved === undefined) delete process.env["CANOPY_CACHE_DIR"]
      else process.env["CANOPY_CACHE_DIR"] = saved
    }
  })

  it("measures again for another Canopy version, and keeps both entries", async () => {
    const dir = tempDir()
    await tune(gpu.device, task(freshCounts("slow", "fast")), { enabled: true, cache: silentFileCache(dir), version: "1.0.0" })
    const counts = freshCounts("slow", "fast")
    const other = await tune(gpu.device, task(counts), { enabled: true, cache: silentFileCache(dir), version: "2.0.0" })
    expect(other.how).toBe("measured")
    expect(counts["fast"]!.encodes).toBeGreaterThan(0)
    const saved = parseTuneCache(readFileSync(join(dir, TUNE_CACHE_FILE), "utf8"))
    expect("entries" in saved && saved.entries.size).toBe(2)
  })

  it("tries the candidates a spent budget left on later runs, against the cached choice, until none is left", async () => {
    const cache = memoryTuneCache()
    const counts = freshCounts("slow", "fast", "medium", "last")
    // medium and last may come out either side of fast: only who is timed against whom is checked after the first run
    const four = task(counts, [scaleCandidate("medium", scaleKernel(2, 400), counts["medium"]!), scaleCandidate("last", FAST, counts["last"]!)])
    // no budget: each run builds two, the first of them the choice so far
    const first = await tune(gpu.device, four, { enabled: true, cache, budgetMs: 0 })
    expect(first).toMatchObject({ name: "fast", how: "measured", untried: ["medium", "last"] })
    const second = await tune(gpu.device, four, { enabled: true, cache, budgetMs: 0 })
    expect(second.timings.map((t) => t.name).sort()).toEqual(["fast", "medium"])
    expect(second.untried).toEqual(["last"])
    const third = await tune(gpu.device, four, { enabled: true, cache, budgetMs: 0 })
    expect(third.timings.map((t) => t.name).sort()).toEqual([second.name, "last"].sort())
    expect(third.untried).toEqual([])
    expect(counts["slow"]!.builds).toBe(1)
    const builds = Object.values(counts).reduce((n, c) => n + c.builds, 0)
    expect(await tune(gpu.device, four, { enabled: true, cache, budgetMs: 0 })).toMatchObject({ how: "cached", measurements: 0 })
    expect(Object.values(counts).reduce((n, c) => n + c.builds, 0)).toBe(builds)
  })

  it("times a candidate offered since the choice was cached against it, once, and never builds a skipped one again", async () => {
    const cache = memoryTuneCache()
    const counts = freshCounts("slow", "fast", "wrong", "later")
    const wrong = scaleCandidate("wrong", scaleKernel(3, 0), counts["wrong"]!)
    expect(await tune(gpu.device, task(counts, [wrong]), { enabled: true, cache })).toMatchObject({ name: "fast", how: "measured" })
    expect(counts["wrong"]!.builds).toBe(1)
    // "later" joins the candidates (as the matrix kernels do once their probe passes): timed against the choice only
    const widened = task(counts, [wrong, scaleCandidate("later", SLOW, counts["later"]!)])
    const builds = (name: string) => counts[name]!.builds
    const [slowBefore, fastBefore] = [builds("slow"), builds("fast")]
    const second = await tune(gpu.device, widened, { enabled: true, cache })
    expect(second.name).toBe("fast")
    expect(second.timings.map((t) => t.name).sort()).toEqual(["fast", "later"])
    expect([builds("slow") - slowBefore, builds("fast") - fastBefore, builds("later"), builds("wrong")]).toEqual([0, 1, 1, 1])
    // every candidate seen now: the third run builds nothing
    expect(await tune(gpu.device, widened, { enabled: true, cache })).toMatchObject({ name: "fast", how: "cached", measurements: 0 })
    expect(Object.values(counts).reduce((n, c) => n + c.builds, 0)).toBe(slowBefore + fastBefore + 3)
  })

  it("ignores a cached choice that is no longer a candidate", async () => {
    const cache = memoryTuneCache()
    await tune(gpu.device, task(freshCounts("slow", "fast")), { enabled: true, cache })
    const counts = freshCounts("slow", "fast", "medium")
    const renamed = { ...task(counts), candidates: [scaleCandidate("slow", SLOW, counts["slow"]!), scaleCandidate("medium", FAST, counts["medium"]!)] }
    const choice = await tune(gpu.device, renamed, { enabled: true, cache })
    expect(choice).toMatchObject({ name: "medium", how: "measured" })
  })

  describe("CANOPY_TUNE", () => {
    const saved = process.env["CANOPY_TUNE"]
    afterEach(() => {
      if (saved === undefined) delete process.env["CANOPY_TUNE"]
      else process.env["CANOPY_TUNE"] = saved
    })

    it("off (or enabled: false) gives the default without building anything", async () => {
      process.env["CANOPY_TUNE"] = "off"
      const counts = freshCounts("slow", "fast")
      const cache = memoryTuneCache()
      expect(await tune(gpu.device, task(counts), { cache })).toMatchObject({ name: "slow", how: "off", measurements: 0 })
      delete process.env["CANOPY_TUNE"]
      expect(await tune(gpu.device, task(counts), { cache, enabled: false })).toMatchObject({ name: "slow", how: "off" })
      expect(counts["slow"]!.builds + counts["fast"]!.builds).toBe(0)
      // unset, it tunes
      expect((await tune(gpu.device, task(counts), { cache })).how).toBe("measured")
    })

    it("reads off, 0, false and no (any case, spaces around) as off; anything else as on", () => {
      for (const off of ["off", "OFF", " 0 ", "false", "No"]) expect(tuningFromEnv({ CANOPY_TUNE: off })).toBe(false)
      for (const on of [undefined, "", "on", "1", "true", "yes", "offline"]) expect(tuningFromEnv({ CANOPY_TUNE: on })).toBe(true)
    })
  })

  it("fails with the reasons when no candidate passes its check", async () => {
    const counts = freshCounts("wrong", "broken")
    const error = await tune(gpu.device, {
      kernel: "tune-test-scale",
      shape: { elements: ELEMENTS },
      candidates: [scaleCandidate("wrong", scaleKernel(3, 0), counts["wrong"]!), scaleCandidate("broken", "fn main( {", counts["broken"]!)]
    }, { enabled: true, cache: memoryTuneCache() }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TuneNoValidCandidate)
    expect((error as Error).message).toMatch(/wrong: wrong results.*broken: does not build/)
  })
})

describe("the tuning cache file", () => {
  const key: TuneKey = {
    adapter: { vendor: "v", architecture: "a", device: "d", description: "desc", software: false },
    version: "0.1.0",
    kernel: "k",
    shape: { headDim: 128, kv: "f16-native" }
  }
  const record = { choice: "x", medianMs: { x: 1, y: 2 }, tunedAt: "2026-01-01T00:00:00.000Z" }

  it("ignores a corrupt or foreign file with a warning, then replaces it on the next save", () => {
    for (const content of ["{not json", JSON.stringify({ some: "other program's file" }), JSON.stringify({ format: "canopy-tune-cache", formatVersion: 99, entries: {} })]) {
      const dir = tempDir()
      writeFileSync(join(dir, TUNE_CACHE_FILE), content)
      const warnings: Array<string> = []
      const cache = silentFileCache(dir, warnings)
      expect(cache.get(key)).toBeUndefined()
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/ignoring it/)
      cache.set(key, record)
      expect(silentFileCache(dir, warnings).get(key)).toEqual(record)
      expect(warnings).toHaveLength(1)
    }
  })

  it("drops malformed entries and keeps the others", () => {
    const dir = tempDir()
    const entries = { [tuneKeyText(key)]: record, bad: { choice: 3 }, worse: { choice: "x", medianMs: { x: -1 }, tunedAt: "" } }
    writeFileSync(join(dir, TUNE_CACHE_FILE), JSON.stringify({ format: "canopy-tune-cache", formatVersion: 1, entries }))
    const warnings: Array<string> = []
    expect(silentFileCache(dir, warnings).get(key)).toEqual(record)
    expect(warnings).toEqual([expect.stringMatching(/2 malformed entries/)])
  })

  it("keeps entries another process saved meanwhile, and leaves no temporary file", () => {
    const dir = tempDir()
    const a = silentFileCache(dir)
    const b = silentFileCache(dir)
    expect(a.get(key)).toBeUndefined()
    b.set({ ...key, kernel: "other" }, record)
    a.set(key, record)
    const fresh = silentFileCache(dir)
    expect(fresh.get(key)).toEqual(record)
    expect(fresh.get({ ...key, kernel: "other" })).toEqual(record)
    expect(readFileSync(join(dir, TUNE_CACHE_FILE), "utf8")).toContain('"format": "canopy-tune-cache"')
    expect(readdirSync(dir)).toEqual([TUNE_CACHE_FILE])
  })

  it("warns instead of failing when the folder cannot be written", () => {
    const blocker = join(tempDir(), "a-file")
    writeFileSync(blocker, "")
    const warnings: Array<string> = []
    const cache = silentFileCache(join(blocker, "canopy"), warnings)
    cache.set(key, record)
    expect(warnings).toEqual([expect.stringMatching(/cannot save the tuning cache/)])
    expect(cache.get(key)).toEqual(record)
  })

  it("keys differ by every adapter field, the version, the kernel and the shape, and not by the shape's field order", () => {
    const adapterField = fc.constantFrom<keyof GpuAdapterSummary>("vendor", "architecture", "device", "description", "software")
    fc.assert(fc.property(adapterField, fc.string(), (field, text) => {
      const value = field === "software" ? !key.adapter.software : `${String(key.adapter[field])}${text}!`
      expect(tuneKeyText({ ...key, adapter: { ...key.adapter, [field]: value } })).not.toBe(tuneKeyText(key))
    }))
    expect(tuneKeyText({ ...key, version: "0.2.0" })).not.toBe(tuneKeyText(key))
    expect(tuneKeyText({ ...key, kernel: "k2" })).not.toBe(tuneKeyText(key))
    expect(tuneKeyText({ ...key, shape: { headDim: 64, kv: "f16-native" } })).not.toBe(tuneKeyText(key))
    expect(tuneKeyText({ ...key, shape: { headDim: 128, kv: "f32" } })).not.toBe(tuneKeyText(key))
    expect(tuneKeyText({ ...key, shape: { kv: "f16-native", headDim: 128 } })).toBe(tuneKeyText(key))
  })

  it("lives in CANOPY_CACHE_DIR, else $XDG_CACHE_HOME/canopy, else ~/.cache/canopy", () => {
    expect(canopyCacheDir({ CANOPY_CACHE_DIR: "/x/y", XDG_CACHE_HOME: "/z" })).toBe("/x/y")
    expect(canopyCacheDir({ XDG_CACHE_HOME: "/z" })).toBe("/z/canopy")
    expect(canopyCacheDir({ XDG_CACHE_HOME: "relative" })).toBe(join(homedir(), ".cache", "canopy"))
    expect(canopyCacheDir({})).toBe(join(homedir(), ".cache", "canopy"))
  })

  it("keys choices by the kernels package's version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
    expect(canopyVersion()).toBe(pkg.version)
  })
})

describe("the level-attention tiles", () => {
  it("are the stacked tiles that fit and every flash2 tile, the default variant's first, findLevelTile's pick leading", () => {
    const limits = (storage: number, invocations: number) =>
      ({ maxComputeWorkgroupStorageSize: storage, maxComputeInvocationsPerWorkgroup: invocations }) as GPUSupportedLimits
    fc.assert(fc.property(
      fc.constantFrom(8, 16, 32, 64, 96, 128), fc.constantFrom(16384, 32768, 49152), fc.constantFrom(128, 256, 1024),
      (headDim, storage, invocations) => {
        const l = limits(storage, invocations)
        const tiles = levelTileCandidates(headDim, l)
        const flash2 = flash2LevelTiles(headDim, l)
        const stacked = tiles.filter((t) => levelVariantOf(t) === "stacked")
        expect(tiles).toEqual(DEFAULT_LEVEL_VARIANT === "flash2" ? [...flash2, ...stacked] : [...stacked, ...flash2])
        expect(tiles[0]).toEqual(findLevelTile(headDim, l))
        expect(stacked[0]).toEqual(findLevelTile(headDim, l, "stacked"))
        for (const t of stacked) expect(levelTileFits(headDim, t, l)).toBe(true)
        expect(new Set(tiles.map(levelTileName)).size).toBe(tiles.length)
      }
    ))
  })

  it("are checked by a comparison that finds a wrong, unwritten or mis-normalized output", () => {
    const headDim = 4
    const ref = { out: Float64Array.from([0.5, -1, 2, 0.25, 0, 0, 0, 0]), lse: Float64Array.from([1.5, -Infinity]) }
    const same = { out: Float32Array.from(ref.out), lse: Float32Array.from(ref.lse) }
    expect(attentionMismatch(same, ref, headDim)).toBeUndefined()
    const off = Float32Array.from(ref.out)
    off[2] = 2.01
    expect(attentionMismatch({ out: off, lse: same.lse }, ref, headDim)).toMatch(/^out of \(row, head\) 0: relative error/)
    const unwritten = Float32Array.from(ref.out)
    unwritten[5] = NaN
    expect(attentionMismatch({ out: unwritten, lse: same.lse }, ref, headDim)).toMatch(/^out of \(row, head\) 1/)
    expect(attentionMismatch({ out: same.out, lse: Float32Array.from([1.5, 0]) }, ref, headDim)).toMatch(/^lse of \(row, head\) 1: 0, the reference -Infinity/)
  })

  it("are tuned among the tiles given, each checked on the reference, one that does not fit skipped", async () => {
    const shape = { heads: 4, kvHeads: 2, headDim: 16, kvDtype: "f16" as const }
    const all = levelTileCandidates(shape.headDim, gpu.device.limits)
    // two cheap tiles of the device's own (compiling a tile takes seconds here), and one it does not allow
    const small = all.filter((t) => levelVariantOf(t) === "stacked" && t.rows <= 16 && t.keys === 8)
    const tooBig: LevelTile = { rows: 64, keys: 7, workgroupSize: 128 }
    const events: Array<string> = []
    const cache = memoryTuneCache()
    const tiles = [...small, tooBig]
    const choice = await tuneLevelTile(gpu.device, shape, {
      enabled: true, cache, tiles, workload: { sequences: 4, sharedTokens: 64, suffixTokens: 4 }, onProgress: (e) => void events.push(describeTuneProgress(e))
    })
    expect(small.map(levelTileName)).toContain(choice.name)
    expect(choice.skipped).toEqual([{ name: "64x7", reason: expect.stringMatching(/^does not build: .*does not fit/) }])
    expect(choice.how).toBe(small.length > 1 ? "measured" : "only")
    expect(events.at(-1)).toMatch(/^level-attention: /)
    // tuning off: the tile the attention picks without it
    expect((await tuneLevelTile(gpu.device, shape, { enabled: false, cache })).value).toEqual(findLevelTile(shape.headDim, gpu.device.limits))
  })

  it("are probed as the tuner tries them: checked on its tree, then timed on a step; a tile that does not build throws", async () => {
    const shape = { heads: 4, kvHeads: 2, headDim: 16, kvDtype: "f16" as const }
    const tile = findLevelTile(shape.headDim, gpu.device.limits, "stacked")!
    const workload = { sequences: 4, sharedTokens: 64, suffixTokens: 4 }
    const probed = await probeLevelTile(gpu.device, shape, tile, undefined, workload)
    expect(probed.mismatch).toBeUndefined()
    expect(probed.step).toMatchObject({ workload, ms: expect.any(Number) })
    expect(probed.step!.ms).toBeGreaterThan(0)
    await expect(probeLevelTile(gpu.device, shape, { rows: 64, keys: 7, workgroupSize: 128 }, undefined, workload)).rejects.toThrow(/does not fit/)
  })
})

describe("the matmul", () => {
  it("is tuned per row regime among the kernels given, each checked on the reference", async () => {
    const shape = { weights: "f16" as const, projections: layerProjections({ hiddenSize: 64, intermediateSize: 96, numHeads: 4, numKvHeads: 2, headDim: 16 }) }
    const cache = memoryTuneCache()
    const options = { enabled: true, cache, decodeCandidates: ["register", "gemv"] as const, prefillCandidates: ["register"] as const }
    const tuned = await tuneMatmul(gpu.device, shape, options)
    expect(["register", "gemv"]).toContain(tuned.choice.decode)
    expect(tuned.decode).toMatchObject({ how: "measured", skipped: [] })
    expect(tuned.decode.timings.map((t) => t.name).sort()).toEqual(["gemv", "register"])
    expect(tuned.prefill).toMatchObject({ name: "register", how: "only" })
    expect((await tuneMatmul(gpu.device, shape, options)).decode).toMatchObject({ name: tuned.choice.decode, how: "cached", measurements: 0 })
    // off: the device family's own choice
    expect((await tuneMatmul(gpu.device, shape, { enabled: false })).choice).toEqual(defaultMatmulChoice(defaultVariant(gpu.device)))
  })
})

describe("the matrix matmul's probe gate", () => {
  const units = { config: { M: 8, N: 8, K: 8 }, subgroupSize: 32, ops: EMULATED_MATRICES }
  const probed = (status: ProbeResult["status"], version = canopyVersion()): TuneCache => {
    const cache = memoryTuneCache()
    recordMatrixProbe(cache, gpu.device, { probe: ENGINE_MATRIX_PROBE, adds: "the engine's matmul", status }, version)
    return cache
  }
  const offered = (cache: TuneCache | undefined, storage: WeightStorage = "f16-native", u: MatrixUnits | string = units) =>
    defaultPrefillCandidates(gpu.device, storage, cache, canopyVersion(), u).includes(MATRIX_MATMUL)

  it("offers the matrix kernel only where it can run and its probe said ok on this adapter for this version", () => {
    expect(offered(probed("ok"))).toBe(true)
    expect(offered(probed("ok"), "f16-packed")).toBe(true)
    expect(defaultPrefillCandidates(gpu.device, "f16-native", probed("ok"), canopyVersion(), units)).toEqual([...MATMUL_CANDIDATES.prefill, MATRIX_MATMUL])
    // never probed (or the probe's process crashed: it keeps nothing), or the probe failed
    expect(offered(memoryTuneCache())).toBe(false)
    expect(offered(undefined)).toBe(false)
    for (const status of ["wrong", "refused", "skipped"] as const) expect(offered(probed(status)), status).toBe(false)
    // probed by another version of Canopy
    expect(offered(probed("ok", "0.0.0-other"))).toBe(false)
    // weights the kernel does not take; a device without matrix units (this one)
    expect(offered(probed("ok"), "f32")).toBe(false)
    expect(offered(probed("ok"), "bf16")).toBe(false)
    expect(offered(probed("ok"), "f16-native", deviceMatrixUnits(gpu.device))).toBe(false)
    expect(matrixProbeStatus(probed("crashed"), gpu.device)).toBe("crashed")
  })

  it("keeps the engine probe's outcome only", () => {
    expect(() => recordMatrixProbe(memoryTuneCache(), gpu.device, { probe: "global-1x1", adds: "", status: "ok" })).toThrow(/only the engine probes \(engine-matmul, engine-level-attention\) are kept/)
  })
})
