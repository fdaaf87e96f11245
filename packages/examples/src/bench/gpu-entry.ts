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
 * Then the `step` part: the host's work of a decode step at batch up to
 * 1,024 for the 13b layout's 40 layers (bench step; OUT/step.json).
 * Then the `schedule` part: samples of varied lengths under the few-shot
 * prompt on a whole CodeLlama-7b shape (f16 weights, all 32 layers),
 * continuous batching against waves and overlapped decoding against stepwise
 * (bench schedule's comparison), where the host's share of a step is real.
 * Last, the `subgroup-matrix` part: each construct of the matrix-unit matmul
 * and attention (SUBGROUP_MATRIX_PROBES) built, checked against float64 and
 * timed in a process of its own, so a driver that aborts on one is reported
 * and the rest still run (OUT/subgroup-matrix.json); where the engine's own
 * matrix matmul passed, the matmul candidates are timed again with it
 * (OUT/matmul-matrix-*.json), and where its matrix level attention passed,
 * the 13b level tile is tuned again with it (OUT/tune-level-matrix.json).
 *
 * Each part runs in a child process of its own (this entry with PART_FLAG),
 * so a driver that aborts or hangs in one part costs that part only; each
 * part's outcome and seconds go to OUT/parts.json as it ends. With
 * `--deadline SECONDS` (a lease of the GPU machine) a part is killed when the
 * deadline comes, and the parts after it are skipped, saying so; the parts'
 * files written by then stay.
 *
 *   bash .gpu/run.sh gpu-entry.mjs OUT_DIR [--deadline SECONDS] [variants|step|subgroup-matrix|13b|gqa|decode|decode-13b|schedule|smoke|decode-smoke|schedule-smoke ...]
 *   (default: variants step 13b gqa decode decode-13b schedule subgroup-matrix)
 *
 * Exit code 1 when any point's methods disagree, any candidate fails its
 * check, or any part did not end well (crashed, timed out, skipped); 2 for
 * bad arguments.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import {
  describeAdapter, type GpuHandle, type KvDtype, layerProjections, measureRoofline, memoryTuneCache, openGpu, tuneLevelTile, tuneMatmul, type TuneProgress, type WeightType
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
import { runStepBench } from "./stepBench.ts"
import { formatStepTable, stepReport } from "./stepReport.ts"
import { formatProbe, keepEngineProbes, probeChild, runProbesIsolated } from "./subgroupMatrixPart.ts"
import { type IsolatedRun, runIsolated } from "./isolated.ts"

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
const DEFAULT_SWEEPS = ["variants", "step", "13b", "gqa", "decode", "decode-13b", "schedule", "subgroup-matrix"]

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
    // a cache of its own, holding the probes' outcomes only: every candidate is timed, none cached before wins unseen
    const cache = memoryTuneCache()
    keepEngineProbes(gpu.device, probes, cache)
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

/**
 * The host's work of one decode step (bench step) for the 13b layout's 40
 * layers and heads at small widths, up to batch 1,024, the merge fused and
 * apart, into OUT/step.json: on a GPU the host time is what the GPU waits for.
 */
const runStep = async (gpu: GpuHandle, outDir: string): Promise<number> => {
  const warmup = 2
  const steps = 7
  // a software adapter (a check of this entry) takes minutes for 40 heads at batch 1,024: there, one head and small batches
  const heads = gpu.adapter.software ? 1 : undefined
  const points = await runStepBench(gpu.device, {
    preset: "codellama-13b", ...(heads === undefined ? {} : { heads }), batches: gpu.adapter.software ? [1, 16] : [1, 64, 256, 1024],
    warmup, steps, separateMerge: true, separateRope: true, onProgress: (text) => console.log(`step: ${text}`)
  })
  const report = stepReport(describeAdapter(gpu.adapter), { preset: "codellama-13b", heads }, warmup, steps, points)
  for (const line of formatStepTable(report)) console.log(line)
  await writeFile(join(outDir, "step.json"), `${JSON.stringify(report, null, 2)}\n`)
  return 0
}

const PARTS = new Set(["variants", "step", "subgroup-matrix"])

/** The flag a part's child process is started with: `<entry> PART_FLAG OUT_DIR NAME`. */
const PART_FLAG = "--gpu-entry-part"

/** The longest a part may run without a deadline: longer is a hang. */
const PART_LIMIT_MS = 20 * 60_000

/** A part's exit code when it ran and found wrong answers (an exception exits with 1). */
const WRONG_ANSWERS_EXIT = 3

/** Less than this left before the deadline, a part is not started. */
const MIN_PART_MS = 20_000

/** The part `name`, in this process, on a device of its own, after the roofline; the number of wrong answers it found. */
const runPart = async (outDir: string, name: string): Promise<number> => {
  await mkdir(outDir, { recursive: true })
  const gpu = await openGpu()
  try {
    const roofline = await measureRoofline(gpu.device, defaultRooflineOptions(gpu.adapter.software))
    const rooflineReport: RooflineReport = { adapter: describeAdapter(gpu.adapter), software: gpu.adapter.software, ...roofline }
    for (const line of formatRoofline(rooflineReport)) console.log(line)
    await writeFile(join(outDir, "roofline.json"), `${JSON.stringify(rooflineReport, null, 2)}\n`)
    if (name === "variants") return await runVariants(gpu, outDir)
    if (name === "step") return await runStep(gpu, outDir)
    if (name === "subgroup-matrix") return await runSubgroupMatrix(gpu, outDir, rooflineReport)
    const decode = DECODE_SWEEPS[name]
    if (decode !== undefined) {
      await runDecode(gpu, outDir, name, decode)
      return 0
    }
    const schedule = SCHEDULE_SWEEPS[name]
    if (schedule !== undefined) {
      await runSchedule(gpu, outDir, name, schedule)
      return 0
    }
    const sweep = SWEEPS[name]!
    const report = await runAttentionBench(gpu, { ...sweep, roofline, kvDtype: "f16" })
    console.log(`\n${name}: ${sweep.shape.heads} heads, ${sweep.shape.kvHeads} KV heads, head dim ${sweep.shape.headDim}, f16 KV against f32`)
    for (const line of formatAttentionTable(report)) console.log(line)
    await writeAttentionReport(report, { json: join(outDir, `attention-${name}.json`), svg: join(outDir, `attention-${name}.svg`) })
    return disagreements(report)
  } finally {
    gpu.close()
  }
}

interface PartOutcome {
  readonly part: string
  /** ok; wrong: it ran and found wrong answers (WRONG_ANSWERS_EXIT); failed, crashed, timed out: how its process ended; skipped: no time was left */
  readonly status: "ok" | "wrong" | "failed" | "crashed" | "timed out" | "skipped"
  readonly seconds: number
  readonly detail?: string
}

const partOutcome = (part: string, run: IsolatedRun, seconds: number): PartOutcome => {
  const last = run.stderr.split("\n").filter((l) => l.trim() !== "").slice(-6).join("\n")
  if (run.timedOut) return { part, status: "timed out", seconds, detail: `killed after ${seconds.toFixed(0)} s` }
  if (run.signal !== null) return { part, status: "crashed", seconds, detail: `signal ${run.signal}: ${last}` }
  if (run.code === 0) return { part, status: "ok", seconds }
  if (run.code === WRONG_ANSWERS_EXIT) return { part, status: "wrong", seconds, detail: "wrong answers: see the part's output" }
  return { part, status: "failed", seconds, detail: `exit code ${run.code}: ${last}` }
}

/** Each of `names` in a child process, in order, within the deadline; their outcomes into OUT/parts.json as each ends. */
const runParts = async (outDir: string, names: ReadonlyArray<string>, deadlineMs: number | undefined): Promise<number> => {
  await mkdir(outDir, { recursive: true })
  const start = Date.now()
  const outcomes: Array<PartOutcome> = []
  for (const part of names) {
    const left = deadlineMs === undefined ? PART_LIMIT_MS : Math.min(PART_LIMIT_MS, deadlineMs - (Date.now() - start))
    if (left < MIN_PART_MS) {
      outcomes.push({ part, status: "skipped", seconds: 0, detail: `${Math.max(0, Math.round(left / 1000))} s of the deadline left` })
    } else {
      console.log(`\n=== ${part} (at ${((Date.now() - start) / 1000).toFixed(0)} s; at most ${(left / 1000).toFixed(0)} s)`)
      const t0 = Date.now()
      const run = await runIsolated([process.argv[1]!, PART_FLAG, outDir, part], left, { echo: true })
      outcomes.push(partOutcome(part, run, (Date.now() - t0) / 1000))
    }
    console.log(`=== ${part}: ${outcomes.at(-1)!.status}`)
    await writeFile(join(outDir, "parts.json"), `${JSON.stringify({ deadlineSeconds: deadlineMs === undefined ? null : deadlineMs / 1000, parts: outcomes }, null, 2)}\n`)
  }
  console.log("\npart               status     seconds")
  for (const o of outcomes) console.log(`${o.part.padEnd(18)} ${o.status.padEnd(10)} ${o.seconds.toFixed(0).padStart(7)}${o.detail === undefined ? "" : `  ${o.detail.split("\n")[0]}`}`)
  return outcomes.every((o) => o.status === "ok") ? 0 : 1
}

const KNOWN_PARTS = [...PARTS, ...Object.keys(SWEEPS), ...Object.keys(DECODE_SWEEPS), ...Object.keys(SCHEDULE_SWEEPS)]

const usage = (problem: string): number => {
  console.error(`usage: gpu-entry OUT_DIR [--deadline SECONDS] [${KNOWN_PARTS.join("|")} ...] (${problem})`)
  return 2
}

const main = async (): Promise<number> => {
  if (process.argv[2] === PROBE_FLAG) return probeChild(process.argv[3] ?? "")
  if (process.argv[2] === PART_FLAG) return (await runPart(process.argv[3]!, process.argv[4]!)) > 0 ? WRONG_ANSWERS_EXIT : 0
  const [outDir, ...rest] = process.argv.slice(2)
  if (outDir === undefined || outDir.startsWith("--")) return usage("no output folder")
  let deadlineMs: number | undefined
  const names: Array<string> = []
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] !== "--deadline") {
      names.push(rest[i]!)
      continue
    }
    const seconds = Number(rest[++i])
    if (!Number.isFinite(seconds) || seconds <= 0) return usage(`--deadline takes a positive number of seconds, got ${rest[i] ?? "nothing"}`)
    deadlineMs = seconds * 1000
  }
  const unknown = names.filter((n) => !KNOWN_PARTS.includes(n))
  if (unknown.length > 0) return usage(`unknown: ${unknown.join(", ")}`)
  return runParts(outDir, names.length > 0 ? names : DEFAULT_SWEEPS, deadlineMs)
}

// A live Dawn instance keeps Node running: exit explicitly.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e))
    process.exit(1)
  }
)
