/**
 * Entry for a GPU machine (bundled by scripts/gpu-pack.sh; it reads no files
 * next to its sources): the roofline, then the attention sweeps of Hydragen's
 * microbenchmarks, then decode throughput of a CodeLlama-7b-shaped synthetic
 * model (4 of its 32 layers) for Hydragen, the baseline and the attention-free
 * ceiling, each written as JSON + SVG into the folder given as the first
 * argument. Every sweep runs f16 KV and, in the same rounds, f32 KV: the
 * first GPU run measures what f16 buys.
 *
 * First, the `variants` part: every matmul candidate and level tile is built,
 * checked against the float64 reference (the tuner does that before it times
 * anything; a failing one is reported and never chosen) and tuned for the 13b
 * shapes, and the matmul candidates are timed on a 13b layer's projections.
 * Then the `schedule` part: samples of varied lengths under the few-shot
 * prompt on a whole CodeLlama-7b shape (f16 weights, all 32 layers),
 * continuous batching against waves and overlapped decoding against stepwise
 * (bench schedule's comparison), where the host's share of a step is real.
 * Last, the `subgroup-matrix` part: each construct of the matrix-unit matmul
 * and attention (SUBGROUP_MATRIX_PROBES) built, checked against float64 and
 * timed in a process of its own, so a driver that aborts on one is reported
 * and the rest still run (OUT/subgroup-matrix.json); where the engine's own
 * matrix matmul passed, the matmul candidates are timed again with it
 * (OUT/matmul-matrix-*.json).
 *
 *   bash .gpu/run.sh gpu-entry.mjs OUT_DIR [variants|subgroup-matrix|13b|gqa|decode|decode-13b|schedule|smoke|decode-smoke|schedule-smoke ...]
 *   (default: variants 13b gqa decode decode-13b schedule subgroup-matrix)
 *
 * Exit code 1 when any point's methods disagree or any candidate fails its check.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import {
  describeAdapter, ENGINE_LEVEL_PROBE, type GpuHandle, type KvDtype, layerProjections, measureRoofline, memoryTuneCache, openGpu, recordMatrixProbe, tuneLevelTile, tuneMatmul, type TuneProgress, type WeightType
} from "@canopy/kernels"
import { loadModel, type ModelConfig, PRESETS, TreeEngine } from "@canopy/runtime"
import { BUILTIN_PROBLEMS } from "../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../pipeline/prompt.ts"
import { disagreements, runAttentionBench, writeAttentionReport } from "./attentionBench.ts"
import { formatAttentionTable } from "./attentionReport.ts"
import { gridPoints, type SweepPoint } from "./attentionWorkload.ts"
import type { BenchShape } from "./benchShape.ts"
import {
  decodeChartSvg, type DecodeReport, decodeVariants, formatDecodeTable, formerKernels, type KernelSet, runDecodeBench
} from "./decodeBench.ts"
import { defaultRooflineOptions, formatRoofline, type RooflineReport } from "./rooflineReport.ts"
import { formatMatmulTable, runMatmulBench } from "./matmulBench.ts"
import { createStepwiseEngine, formatScheduleTable, runScheduleBench, type ScheduleReport } from "./schedule.ts"
import { PROBE_FLAG } from "./probeFlag.ts"
import { formatProbe, keepEngineProbes, probeChild, runProbesIsolated } from "./subgroupMatrixPart.ts"

interface Sweep {
  readonly shape: BenchShape
  readonly points: ReadonlyArray<SweepPoint>
}

const SWEEPS: Record<string, Sweep> = {
  // One CodeLlama-13b attention layer, as in Hydragen's end-to-end figures.
  // Pools are sized per point (prefix once + each suffix): batch 1024 × 128
  // suffix tokens × 40 KV heads is 2.7 GB per pool, above the 2 GiB storage
  // binding, so those pools are laid out in shards of KV heads.
  "13b": {
    shape: { heads: 40, kvHeads: 40, headDim: 128, blockSize: 16 },
    points: gridPoints([32, 64, 128, 256, 512, 1024], [1024, 2048, 4096, 8192, 16384], [128])
  },
  // Hydragen's microbenchmark: 8 query heads on 1 KV head, batch and prefix growing together.
  gqa: {
    shape: { heads: 8, kvHeads: 1, headDim: 128, blockSize: 16 },
    points: [
      { batch: 512, prefix: 1024, suffix: 128 },
      { batch: 1024, prefix: 2048, suffix: 128 },
      { batch: 2048, prefix: 4096, suffix: 128 },
      { batch: 4096, prefix: 8192, suffix: 128 }
    ]
  },
  // Seconds anywhere: checks that the bundle runs before the long sweeps.
  smoke: {
    shape: { heads: 4, kvHeads: 2, headDim: 16, blockSize: 16 },
    points: gridPoints([2, 4], [64], [8])
  }
}
// the probes last: a construct that hangs the GPU must not cost the other figures
const DEFAULT_SWEEPS = ["variants", "13b", "gqa", "decode", "decode-13b", "schedule", "subgroup-matrix"]

interface DecodeSweep {
  readonly model: ModelConfig
  readonly label: string
  readonly batches: ReadonlyArray<number>
  readonly prefixes: ReadonlyArray<number>
  readonly tokens: number
  readonly kvMemoryBytes: number
  /** Hydragen and the baseline also on the former kernels (formerKernels), for the tuned kernels' ratio */
  readonly former?: boolean
}

const DECODE_SWEEPS: Record<string, DecodeSweep> = {
  // 4 layers of a CodeLlama-7b shape: per-layer costs as in the full model, in minutes
  decode: {
    model: { ...PRESETS["codellama-7b"], numLayers: 4 },
    label: "synthetic codellama-7b shape, 4 of 32 layers",
    batches: [64, 256, 512],
    prefixes: [1024, 4096, 8192],
    tokens: 32,
    kvMemoryBytes: 16 * 2 ** 30,
    former: true
  },
  // 4 layers of a CodeLlama-13b shape at batch 1,024
  "decode-13b": {
    model: { ...PRESETS["codellama-13b"], numLayers: 4 },
    label: "synthetic codellama-13b shape, 4 of 40 layers",
    batches: [256, 1024],
    prefixes: [1024, 4096],
    tokens: 16,
    kvMemoryBytes: 24 * 2 ** 30
  },
  // seconds anywhere: checks the engine runs in the bundle
  "decode-smoke": {
    model: PRESETS.tiny,
    label: "synthetic tiny",
    batches: [4],
    prefixes: [64],
    tokens: 4,
    kvMemoryBytes: 2 ** 26
  }
}

interface ScheduleSweep {
  readonly model: ModelConfig
  readonly weights: WeightType
  readonly label: string
  readonly problems: number
  readonly samplesPerProblem: number
  readonly minTokens: number
  readonly maxTokens: number
  readonly maxBatch: number
  readonly repeats: number
  readonly kvMemoryBytes: number
}

const SCHEDULE_SWEEPS: Record<string, ScheduleSweep> = {
  // a whole 7b model's 32 layers: the host's work per step is a 32-layer step's
  schedule: {
    model: PRESETS["codellama-7b"], weights: "f16", label: "synthetic codellama-7b shape, f16 weights",
    problems: 4, samplesPerProblem: 16, minTokens: 4, maxTokens: 64, maxBatch: 16, repeats: 3, kvMemoryBytes: 4 * 2 ** 30
  },
  // seconds anywhere: checks both engines run in the bundle
  "schedule-smoke": {
    model: PRESETS.tiny, weights: "f32", label: "synthetic tiny",
    problems: 2, samplesPerProblem: 3, minTokens: 1, maxTokens: 6, maxBatch: 2, repeats: 1, kvMemoryBytes: 2 ** 26
  }
}

/**
 * bench schedule's comparison on one model: continuous batching and waves on
 * an overlapped engine, continuous batching on a stepwise one with the same
 * kernels, into OUT/<name>.json. Throws (ScheduleMismatch) if any two runs give
 * other completions.
 */
const runSchedule = async (gpu: GpuHandle, outDir: string, name: string, sweep: ScheduleSweep): Promise<void> => {
  const model = await loadModel(gpu.device, { kind: "synthetic", model: sweep.model, seed: 0, dtype: sweep.weights })
  const engines: Array<TreeEngine> = []
  try {
    const options = { maxBatch: sweep.maxBatch, kvMemoryBytes: sweep.kvMemoryBytes }
    const overlapped = await TreeEngine.create(gpu.device, model, options)
    engines.push(overlapped)
    const stepwise = await createStepwiseEngine(gpu.device, model, overlapped, options)
    engines.push(stepwise)
    const figures = await runScheduleBench(overlapped, {
      fewShot: FEW_SHOT_PROMPT,
      problems: BUILTIN_PROBLEMS.slice(0, sweep.problems),
      samplesPerProblem: sweep.samplesPerProblem,
      minTokens: sweep.minTokens,
      maxTokens: sweep.maxTokens,
      seed: 0,
      repeats: sweep.repeats,
      onProgress: (text) => console.log(`${name}: ${text}`)
    }, stepwise)
    const report: ScheduleReport = { adapter: describeAdapter(gpu.adapter), model: sweep.label, ...figures }
    console.log(`\n${name}`)
    for (const line of formatScheduleTable(report)) console.log(line)
    await writeFile(join(outDir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`)
  } finally {
    for (const engine of engines) engine.destroy()
    model.weights.destroy()
  }
}

/**
 * Decode tokens/s for Hydragen, the baseline and the attention-free ceiling on
 * an f16 KV cache, with Hydragen and the baseline on an f32 one in the same
 * rounds (and, where the sweep asks, on the former kernels), one engine per
 * KV dtype and kernel set over one model, into OUT/<name>.{json,svg}.
 */
const runDecode = async (gpu: GpuHandle, outDir: string, name: string, sweep: DecodeSweep): Promise<void> => {
  const model = await loadModel(gpu.device, { kind: "synthetic", model: sweep.model, seed: 0 })
  const variants = decodeVariants("f16", sweep.former ?? false)
  const keyOf = (v: { kvDtype: KvDtype; kernels: KernelSet }) => `${v.kvDtype} ${v.kernels}`
  const engines = new Map<string, TreeEngine>()
  try {
    for (const v of variants) {
      if (engines.has(keyOf(v))) continue
      engines.set(keyOf(v), await TreeEngine.create(gpu.device, model, {
        maxBatch: Math.max(...sweep.batches), kvMemoryBytes: sweep.kvMemoryBytes, kvDtype: v.kvDtype,
        ...(v.kernels === "former" ? { kernels: formerKernels(gpu.device, sweep.model.headDim) } : {})
      }))
    }
    const points = await runDecodeBench((v) => engines.get(keyOf(v))!, {
      batches: sweep.batches,
      prefixes: sweep.prefixes,
      tokens: sweep.tokens,
      variants,
      onPoint: (text) => console.log(text)
    })
    const report: DecodeReport = { adapter: describeAdapter(gpu.adapter), model: sweep.label, kvDtype: "f16", tokens: sweep.tokens, points }
    console.log(`\n${name}`)
    for (const line of formatDecodeTable(report)) console.log(line)
    await writeFile(join(outDir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`)
    await writeFile(join(outDir, `${name}.svg`), decodeChartSvg(report))
  } finally {
    for (const engine of engines.values()) engine.destroy()
    model.weights.destroy()
  }
}

/**
 * Tunes the matmul and the level tile for the 13b shapes with a fresh,
 * in-memory cache (every candidate checked against the reference, then timed),
 * and times every matmul candidate on the layer's projections at decode and
 * prefill row counts, into OUT/tune.json and OUT/matmul-*.json. Returns the
 * number of candidates that failed their check.
 */
const runVariants = async (gpu: GpuHandle, outDir: string): Promise<number> => {
  const c = PRESETS["codellama-13b"]
  const cache = memoryTuneCache()
  const onProgress = (e: TuneProgress) => console.log(`tune: ${JSON.stringify(e)}`)
  const tuning = {
    matmul: await Promise.all((["f16", "f32"] as const).map((weights) =>
      tuneMatmul(gpu.device, { weights, projections: layerProjections(c) }, { cache, onProgress, enabled: true }))),
    levelTile: await Promise.all((["f16", "f32"] as const).map((kvDtype) =>
      tuneLevelTile(gpu.device, { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, kvDtype }, { cache, onProgress, enabled: true })))
  }
  await writeFile(join(outDir, "tune.json"), `${JSON.stringify(tuning, null, 2)}\n`)
  const failed = [...tuning.matmul.flatMap((t) => [...t.decode.skipped, ...t.prefill.skipped]), ...tuning.levelTile.flatMap((t) => t.skipped)]
  for (const f of failed) console.log(`candidate ${f.name} failed: ${f.reason}`)
  // a software adapter (a check of this entry) takes seconds per 13b product: there, small ones
  const software = gpu.adapter.software
  const projections = software
    ? [{ name: "o", inDim: 256, outDim: 256 }]
    : [{ name: "o", inDim: c.hiddenSize, outDim: c.hiddenSize }, { name: "gate-up", inDim: c.hiddenSize, outDim: 2 * c.intermediateSize }]
  for (const projection of projections) {
    const report = await runMatmulBench(gpu.device, describeAdapter(gpu.adapter), {
      rows: software ? [1, 64] : [1, 8, 64, 1024], inDim: projection.inDim, outDim: projection.outDim, weights: "f16", input: "plain",
      warmup: software ? 1 : 2, rounds: software ? 3 : 5, dispatches: software ? 1 : 8
    })
    for (const line of formatMatmulTable(report)) console.log(line)
    await writeFile(join(outDir, `matmul-${projection.name}.json`), `${JSON.stringify(report, null, 2)}\n`)
  }
  return failed.length
}

/**
 * The subgroup-matrix probes, each in a child process running this entry,
 * into OUT/subgroup-matrix.json beside the roofline's f32 matmul rate. Where
 * the engine's matrix matmul passed its probe, the tuner may build it
 * (keepEngineProbes), and the matmul candidates are timed again with it on the
 * 13b projections into OUT/matmul-matrix-*.json; where the matrix level
 * attention passed, the level tile of the 13b shape on f16 KV is tuned again
 * with it among the candidates, into OUT/tune-level-matrix.json. Returns the
 * number of probes that built a wrong kernel.
 */
const runSubgroupMatrix = async (gpu: GpuHandle, outDir: string, roofline: RooflineReport): Promise<number> => {
  console.log("\nsubgroup-matrix: each construct in a process of its own")
  const probes = await runProbesIsolated(process.argv[1]!, (r) => console.log(formatProbe(r)))
  const report = { adapter: describeAdapter(gpu.adapter), f32MatmulGflops: roofline.matmul.gflops, probes }
  await writeFile(join(outDir, "subgroup-matrix.json"), `${JSON.stringify(report, null, 2)}\n`)
  const kept = keepEngineProbes(gpu.device, probes)
  const c = PRESETS["codellama-13b"]
  if (kept.level) {
    const cache = memoryTuneCache()
    recordMatrixProbe(cache, gpu.device, probes.find((p) => p.probe === ENGINE_LEVEL_PROBE)!)
    const shape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, kvDtype: "f16" as const }
    const tuning = await tuneLevelTile(gpu.device, shape, { cache, enabled: true, onProgress: (e) => console.log(`tune: ${JSON.stringify(e)}`) })
    await writeFile(join(outDir, "tune-level-matrix.json"), `${JSON.stringify(tuning, null, 2)}\n`)
  }
  if (kept.matmul) {
    for (const projection of [{ name: "o", inDim: c.hiddenSize, outDim: c.hiddenSize }, { name: "gate-up", inDim: c.hiddenSize, outDim: 2 * c.intermediateSize }]) {
      const bench = await runMatmulBench(gpu.device, describeAdapter(gpu.adapter), {
        rows: [64, 1024], inDim: projection.inDim, outDim: projection.outDim, weights: "f16", input: "plain", warmup: 2, rounds: 5, dispatches: 8
      })
      for (const line of formatMatmulTable(bench)) console.log(line)
      await writeFile(join(outDir, `matmul-matrix-${projection.name}.json`), `${JSON.stringify(bench, null, 2)}\n`)
    }
  }
  return probes.filter((p) => p.status === "wrong").length
}

const PARTS = new Set(["variants", "subgroup-matrix"])

const main = async (): Promise<number> => {
  if (process.argv[2] === PROBE_FLAG) return probeChild(process.argv[3] ?? "")
  const [outDir, ...names] = process.argv.slice(2)
  const chosen = names.length > 0 ? names : DEFAULT_SWEEPS
  const unknown = chosen.filter((n) => !PARTS.has(n) && !(n in SWEEPS) && !(n in DECODE_SWEEPS) && !(n in SCHEDULE_SWEEPS))
  if (outDir === undefined || unknown.length > 0) {
    const parts = [...PARTS, ...Object.keys(SWEEPS), ...Object.keys(DECODE_SWEEPS), ...Object.keys(SCHEDULE_SWEEPS)]
    console.error(`usage: gpu-entry OUT_DIR [${parts.join("|")} ...]${unknown.length > 0 ? ` (unknown: ${unknown.join(", ")})` : ""}`)
    return 2
  }
  await mkdir(outDir, { recursive: true })
  const gpu = await openGpu()
  try {
    const roofline = await measureRoofline(gpu.device, defaultRooflineOptions(gpu.adapter.software))
    const rooflineReport: RooflineReport = { adapter: describeAdapter(gpu.adapter), software: gpu.adapter.software, ...roofline }
    for (const line of formatRoofline(rooflineReport)) console.log(line)
    await writeFile(join(outDir, "roofline.json"), `${JSON.stringify(rooflineReport, null, 2)}\n`)
    let wrong = 0
    for (const name of chosen) {
      if (name === "variants") {
        wrong += await runVariants(gpu, outDir)
        continue
      }
      if (name === "subgroup-matrix") {
        wrong += await runSubgroupMatrix(gpu, outDir, rooflineReport)
        continue
      }
      const decode = DECODE_SWEEPS[name]
      if (decode !== undefined) {
        await runDecode(gpu, outDir, name, decode)
        continue
      }
      const schedule = SCHEDULE_SWEEPS[name]
      if (schedule !== undefined) {
        await runSchedule(gpu, outDir, name, schedule)
        continue
      }
      const sweep = SWEEPS[name]!
      const report = await runAttentionBench(gpu, { ...sweep, roofline, kvDtype: "f16" })
      console.log(`\n${name}: ${sweep.shape.heads} heads, ${sweep.shape.kvHeads} KV heads, head dim ${sweep.shape.headDim}, f16 KV against f32`)
      for (const line of formatAttentionTable(report)) console.log(line)
      await writeAttentionReport(report, { json: join(outDir, `attention-${name}.json`), svg: join(outDir, `attention-${name}.svg`) })
      wrong += disagreements(report)
    }
    return wrong > 0 ? 1 : 0
  } finally {
    gpu.close()
  }
}

// A live Dawn instance keeps Node running: exit explicitly.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e))
    process.exit(1)
  }
)
