/**
 * SwiftShader against lavapipe, the two software adapters, on the attention
 * and decode benchmarks: both devices open in this one process, each round
 * running every benchmark on both adapters, the adapters' order alternating
 * from round to round. A figure per adapter is the median over rounds of
 * that round's median (the benchmarks' own warm-up and repeats inside); a
 * ratio is the median of the per-round ratios, with its range.
 *
 *   node --import tsx packages/examples/src/bench/softwareAdapters.ts [ROUNDS]   (default 3)
 *
 * Kernels compile on first use and are cached per device, so the first
 * round's warm-ups pay for them; Mesa keeps lavapipe's compiled shaders on
 * disk as well. The compile times are printed apart: they are what a
 * fresh process pays, and lavapipe's are many times SwiftShader's.
 */
import { describeAdapter, type GpuHandle, type KvDtype, openGpu, type RooflineFigures } from "@canopy/kernels"
import { type AttentionMode, type LoadedModel, loadModel, PRESETS, TreeEngine } from "@canopy/runtime"
import { runAttentionBench } from "./attentionBench.ts"
import { gridPoints } from "./attentionWorkload.ts"
import { runDecodeBench } from "./decodeBench.ts"
import { pairedRatios, ratioPhrase, spreadOf, valueWithRange } from "./figures.ts"

/** Not measured: the ratios between adapters need no roofline. */
const NO_ROOFLINE: RooflineFigures = {
  bandwidth: { bytes: 1, ms: 1, gbPerSecond: 1, timing: "wall-clock" },
  matmul: { n: 1, ms: 1, gflops: 1, variant: "gpu", timing: "wall-clock" }
}

const ATTENTION = {
  shape: { heads: 8, kvHeads: 1, headDim: 64, blockSize: 16 },
  points: gridPoints([8, 32], [256, 1024], [32]),
  kvDtype: "f16" as KvDtype
}
const DECODE = { batches: [8, 32], prefixes: [256], tokens: 16, modes: ["hydragen", "baseline", "none"] as ReadonlyArray<AttentionMode> }

/** One measured figure of one benchmark, keyed so that the adapters' figures line up. */
type Figures = Map<string, number>

const attentionFigures = async (gpu: GpuHandle): Promise<Figures> => {
  const report = await runAttentionBench(gpu, { ...ATTENTION, roofline: NO_ROOFLINE, repeats: 3, progress: false })
  const figures: Figures = new Map()
  for (const p of report.points) {
    const at = `attention batch ${p.batch} prefix ${p.prefix}`
    figures.set(`${at} hydragen ${p.kvDtype} ms`, p.hydragenMs)
    figures.set(`${at} baseline ${p.kvDtype} ms`, p.baselineMs)
    if (p.f32 !== undefined) {
      figures.set(`${at} hydragen f32 ms`, p.f32.hydragenMs)
      figures.set(`${at} baseline f32 ms`, p.f32.baselineMs)
    }
  }
  return figures
}

const decodeFigures = async (engine: TreeEngine): Promise<Figures> => {
  const variants = DECODE.modes.map((mode) => ({ mode, kvDtype: "f16" as const, kernels: "tuned" as const }))
  const points = await runDecodeBench(() => engine, { ...DECODE, variants, repeats: 2 })
  return new Map(points.map((p) => [`decode batch ${p.batch} prefix ${p.prefix} ${p.mode} f16 ms/token`, 1000 / p.tokensPerSecond]))
}

interface Side {
  readonly name: string
  readonly gpu: GpuHandle
  readonly model: LoadedModel
  readonly engine: TreeEngine
  readonly rounds: Array<Figures>
  /** seconds the first round took: most of it compiling */
  first: number
}

const openSide = async (name: string): Promise<Side> => {
  const gpu = await openGpu({ adapter: { name } })
  const model = await loadModel(gpu.device, { kind: "synthetic", model: PRESETS.tiny, seed: 0 })
  const engine = await TreeEngine.create(gpu.device, model, { maxBatch: Math.max(...DECODE.batches), kvDtype: "f16" })
  return { name, gpu, model, engine, rounds: [], first: 0 }
}

const report = (sides: readonly [Side, Side]): ReadonlyArray<string> => {
  const [a, b] = sides
  const keys = [...a.rounds[0]!.keys()]
  const width = Math.max(...keys.map((k) => k.length))
  return [
    `${a.name}: ${describeAdapter(a.gpu.adapter)}`,
    `${b.name}: ${describeAdapter(b.gpu.adapter)}`,
    `${a.rounds.length} rounds in one process, the adapters' order alternating; first round (compiles included): ` +
      `${a.name} ${a.first.toFixed(0)} s, ${b.name} ${b.first.toFixed(0)} s`,
    `${"figure".padEnd(width)}  ${a.name} (range)  ${b.name} (range)  ${b.name} vs ${a.name} (range)`,
    ...keys.map((key) => {
      const mine = (s: Side) => s.rounds.map((r) => r.get(key)!)
      const ratio = spreadOf(pairedRatios(mine(a), mine(b)))
      return `${key.padEnd(width)}  ${valueWithRange(spreadOf(mine(a)), 3)}  ${valueWithRange(spreadOf(mine(b)), 3)}  ${ratioPhrase(ratio, { rounds: false })}`
    })
  ]
}

const main = async (): Promise<void> => {
  const rounds = Number(process.argv[2] ?? 3)
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`ROUNDS must be a positive integer, got ${process.argv[2]}`)
  const sides = [await openSide("swiftshader"), await openSide("llvmpipe")] as const
  try {
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 === 0 ? sides : [sides[1], sides[0]]) {
        const started = performance.now()
        const figures = new Map([...(await attentionFigures(side.gpu)), ...(await decodeFigures(side.engine))])
        side.rounds.push(figures)
        if (round === 0) side.first = (performance.now() - started) / 1000
        console.error(`round ${round + 1}/${rounds}: ${side.name} done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
      }
    }
    for (const line of report(sides)) console.log(line)
  } finally {
    for (const side of sides) {
      side.engine.destroy()
      side.model.weights.destroy()
      side.gpu.close()
    }
  }
}

// A live Dawn instance keeps Node running: exit explicitly.
main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e))
    process.exit(1)
  }
)
