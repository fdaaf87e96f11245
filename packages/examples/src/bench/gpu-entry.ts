/**
 * Entry for a GPU machine (bundled by scripts/gpu-pack.sh; it reads no files
 * next to its sources): the roofline, then the attention sweeps of Hydragen's
 * microbenchmarks, then decode throughput of a CodeLlama-7b-shaped synthetic
 * model (4 of its 32 layers) for Hydragen, the baseline and the attention-free
 * ceiling, each written as JSON + SVG into the folder given as the first
 * argument. Every sweep runs f16 KV and, in the same rounds, f32 KV: the
 * first GPU run measures what f16 buys.
 *
 *   bash .gpu/run.sh gpu-entry.mjs OUT_DIR [13b|gqa|decode|smoke|decode-smoke ...]   (default: 13b gqa decode)
 *
 * Exit code 1 when any point's methods disagree.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { describeAdapter, type GpuHandle, type KvDtype, measureRoofline, openGpu } from "@canopy/kernels"
import { loadModel, type ModelConfig, PRESETS, TreeEngine } from "@canopy/runtime"
import { disagreements, runAttentionBench, writeAttentionReport } from "./attentionBench.ts"
import { formatAttentionTable } from "./attentionReport.ts"
import { gridPoints, type SweepPoint } from "./attentionWorkload.ts"
import type { BenchShape } from "./benchShape.ts"
import { decodeChartSvg, type DecodeReport, decodeVariants, formatDecodeTable, runDecodeBench } from "./decodeBench.ts"
import { defaultRooflineOptions, formatRoofline, type RooflineReport } from "./rooflineReport.ts"

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
const DEFAULT_SWEEPS = ["13b", "gqa", "decode"]

interface DecodeSweep {
  readonly model: ModelConfig
  readonly label: string
  readonly batches: ReadonlyArray<number>
  readonly prefixes: ReadonlyArray<number>
  readonly tokens: number
  readonly kvMemoryBytes: number
}

const DECODE_SWEEPS: Record<string, DecodeSweep> = {
  // 4 layers of a CodeLlama-7b shape: per-layer costs as in the full model, in minutes
  decode: {
    model: { ...PRESETS["codellama-7b"], numLayers: 4 },
    label: "synthetic codellama-7b shape, 4 of 32 layers",
    batches: [64, 256, 512],
    prefixes: [1024, 4096, 8192],
    tokens: 32,
    kvMemoryBytes: 16 * 2 ** 30
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

/**
 * Decode tokens/s for Hydragen, the baseline and the attention-free ceiling on
 * an f16 KV cache, with Hydragen and the baseline on an f32 one in the same
 * rounds (two engines over one model), into OUT/<name>.{json,svg}.
 */
const runDecode = async (gpu: GpuHandle, outDir: string, name: string, sweep: DecodeSweep): Promise<void> => {
  const model = await loadModel(gpu.device, { kind: "synthetic", model: sweep.model, seed: 0 })
  const engines = new Map<KvDtype, TreeEngine>()
  try {
    for (const kvDtype of ["f16", "f32"] as const) {
      engines.set(kvDtype, await TreeEngine.create(gpu.device, model, { maxBatch: Math.max(...sweep.batches), kvMemoryBytes: sweep.kvMemoryBytes, kvDtype }))
    }
    const points = await runDecodeBench((kvDtype) => engines.get(kvDtype)!, {
      batches: sweep.batches,
      prefixes: sweep.prefixes,
      tokens: sweep.tokens,
      variants: decodeVariants("f16"),
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

const main = async (): Promise<number> => {
  const [outDir, ...names] = process.argv.slice(2)
  const chosen = names.length > 0 ? names : DEFAULT_SWEEPS
  const unknown = chosen.filter((n) => !(n in SWEEPS) && !(n in DECODE_SWEEPS))
  if (outDir === undefined || unknown.length > 0) {
    console.error(`usage: gpu-entry OUT_DIR [${[...Object.keys(SWEEPS), ...Object.keys(DECODE_SWEEPS)].join("|")} ...]${unknown.length > 0 ? ` (unknown: ${unknown.join(", ")})` : ""}`)
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
      const decode = DECODE_SWEEPS[name]
      if (decode !== undefined) {
        await runDecode(gpu, outDir, name, decode)
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
