/**
 * `canopy bench matmul`: every matmul candidate of each row regime
 * (MATMUL_CANDIDATES; gemv-vec4 with both reductions where the device has
 * subgroups; the matrix kernel where its probe passed on this adapter,
 * defaultPrefillCandidates) on one in → out projection at each row count, against the
 * device's default kernel for that regime. Each candidate is its own
 * MatmulKernel, built before anything is timed; the candidates of a row count
 * are warmed up and then timed in rounds, the order rotating from round to
 * round (timeRotating), so the speed-up over the default is a per-round ratio
 * with its range.
 */
import {
  canopyVersion, capabilitiesOf, createRowCount, defaultMatmulChoice, defaultPrefillCandidates, defaultTuneCache, defaultVariant, GEMV_MAX_ROWS,
  type GpuCapabilities, MATMUL_CANDIDATES, type MatmulChoice, type MatmulInput, type MatmulInputOption, MatmulKernel, packWeights, uploadBuffer,
  weightStorageFor, type WeightType
} from "@canopy/kernels"
import { ratioPhrase, type Spread, spreadOf, valueWithRange } from "./figures.ts"
import { roundRatio, timeRotating } from "./rotatingTiming.ts"

export interface MatmulBenchOptions {
  readonly rows: ReadonlyArray<number>
  readonly inDim: number
  readonly outDim: number
  readonly weights: WeightType
  readonly input: MatmulInput
  readonly warmup: number
  readonly rounds: number
  /** dispatches of the product per timed sample (the figures are per dispatch): a GPU's decoding GEMV takes microseconds */
  readonly dispatches: number
  readonly onProgress?: (text: string) => void
}

export interface MatmulBenchEntry {
  /** the candidate's name, with its reduction for gemv-vec4 */
  readonly candidate: string
  /** the pipeline it ran (tile, loads, reduction, input, weights) */
  readonly kernel: string
  readonly isDefault: boolean
  /** ms per dispatch over the rounds */
  readonly ms: Spread
  /** 2·rows·in·out flops at the median time */
  readonly gflops: number
  /** the default's time over this one's, per round */
  readonly speedUp: Spread
}

export interface MatmulBenchPoint {
  readonly rows: number
  readonly regime: "decode" | "prefill"
  /** rounds timed: `rounds`, or fewer (at least 3) once timeRotating's time budget was spent */
  readonly rounds: number
  readonly entries: ReadonlyArray<MatmulBenchEntry>
}

export interface MatmulBenchReport {
  readonly adapter: string
  readonly software: boolean
  readonly inDim: number
  readonly outDim: number
  readonly weights: WeightType
  readonly input: MatmulInput
  readonly warmup: number
  readonly rounds: number
  readonly dispatches: number
  readonly timing: "timestamp-query" | "wall-clock"
  readonly points: ReadonlyArray<MatmulBenchPoint>
}

/** Sizes that take a fraction of a second on a software adapter's two cores, and a 7b layer's projection on a GPU. */
export const defaultMatmulSize = (software: boolean): { readonly inDim: number; readonly outDim: number; readonly dispatches: number } =>
  software ? { inDim: 512, outDim: 512, dispatches: 1 } : { inDim: 4096, outDim: 4096, dispatches: 16 }

interface Candidate {
  readonly name: string
  readonly choice: MatmulChoice
  readonly capabilities: GpuCapabilities
  readonly isDefault: boolean
}

/** One regime's candidates, the other regime on "register" (cheap to build, never timed). */
const candidatesOf = (device: GPUDevice, regime: "decode" | "prefill", weights: WeightType): ReadonlyArray<Candidate> => {
  const own = capabilitiesOf(device)
  const fallback = defaultMatmulChoice(defaultVariant(device))
  const other = { decode: "register", prefill: "register" } as const
  const names: ReadonlyArray<string> = regime === "decode"
    ? MATMUL_CANDIDATES.decode
    : defaultPrefillCandidates(device, weightStorageFor(weights, own), defaultTuneCache(), canopyVersion())
  return names.flatMap((name): ReadonlyArray<Candidate> => {
    const choice = { ...other, [regime]: name } as MatmulChoice
    const isDefault = fallback[regime] === name
    if (name === "gemv-vec4" && own.subgroups) {
      return [
        { name: "gemv-vec4 (subgroups)", choice, capabilities: own, isDefault },
        { name: "gemv-vec4 (workgroup)", choice, capabilities: { ...own, subgroups: false }, isDefault: false }
      ]
    }
    return [{ name, choice, capabilities: own, isDefault }]
  })
}

/** Uniform values in [−1, 1): zeros could take faster paths on a software adapter. */
const randomValues = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s / 2 ** 32) * 2 - 1
  })
}

export const runMatmulBench = async (device: GPUDevice, adapter: string, o: MatmulBenchOptions): Promise<MatmulBenchReport> => {
  const maxRows = Math.max(...o.rows)
  const xWidth = o.input === "swiglu" ? 2 * o.inDim : o.inDim
  const owned: Array<{ destroy(): void }> = []
  const own = <T extends { destroy(): void }>(x: T): T => {
    owned.push(x)
    return x
  }
  try {
    const x = own(uploadBuffer(device, "bench matmul x", randomValues(maxRows * xWidth, 1)))
    const w = own(uploadBuffer(device, "bench matmul w", packWeights(o.weights, randomValues(o.outDim * o.inDim, 2))))
    const gamma = own(uploadBuffer(device, "bench matmul gamma", randomValues(o.inDim, 3)))
    const y = own(uploadBuffer(device, "bench matmul y", new Float32Array(maxRows * o.outDim)))
    const input: MatmulInputOption = o.input === "rmsnorm" ? { kind: "rmsnorm", weight: gamma, eps: 1e-5 } : { kind: o.input }
    const regimes = (["decode", "prefill"] as const).filter((r) => o.rows.some((rows) => (rows <= GEMV_MAX_ROWS) === (r === "decode")))
    // every kernel is built (compiled) before anything is timed
    const kernels = new Map<string, MatmulKernel>()
    for (const regime of regimes) {
      for (const c of candidatesOf(device, regime, o.weights)) {
        o.onProgress?.(`building ${c.name}`)
        kernels.set(`${regime} ${c.name}`, own(await MatmulKernel.create(device, c.choice, o.weights, c.capabilities, { inputs: [o.input] })))
      }
    }
    const points: Array<MatmulBenchPoint> = []
    let timing: MatmulBenchReport["timing"] = "wall-clock"
    for (const rows of o.rows) {
      const regime = rows <= GEMV_MAX_ROWS ? "decode" : "prefill"
      const count = own(createRowCount(device, "bench matmul rows", rows))
      const candidates = candidatesOf(device, regime, o.weights)
      const bound = candidates.map((c) =>
        own(kernels.get(`${regime} ${c.name}`)!.bind({ x, w, y, count: count.buffer, inDim: o.inDim, outDim: o.outDim, input })))
      o.onProgress?.(`timing ${rows} rows: ${candidates.map((c) => c.name).join(", ")}`)
      const timed = await timeRotating(device, bound.map((b) => (encoder: GPUCommandEncoder) => {
        const pass = encoder.beginComputePass({ label: "bench matmul" })
        for (let d = 0; d < o.dispatches; d++) b.encode(pass, rows)
        pass.end()
      }), { warmup: o.warmup, repeats: o.rounds })
      timing = timed.source
      const reference = Math.max(0, candidates.findIndex((c) => c.isDefault))
      const flops = 2 * rows * o.inDim * o.outDim
      points.push({
        rows,
        regime,
        rounds: timed.rounds,
        entries: candidates.map((c, i) => {
          const ms = spreadOf(timed.samples[i]!.map((t) => t / o.dispatches))
          return {
            candidate: c.name,
            kernel: bound[i]!.uses[regime]!.kernel,
            isDefault: i === reference,
            ms,
            gflops: flops / (ms.median * 1e6),
            speedUp: roundRatio(timed, reference, i)
          }
        })
      })
    }
    return {
      adapter, software: capabilitiesOf(device).software, inDim: o.inDim, outDim: o.outDim, weights: o.weights, input: o.input,
      warmup: o.warmup, rounds: o.rounds, dispatches: o.dispatches, timing, points
    }
  } finally {
    for (const x of owned.reverse()) x.destroy()
  }
}

export const formatMatmulTable = (r: MatmulBenchReport): ReadonlyArray<string> => {
  const head = [
    `${r.adapter}${r.software ? " (software adapter: only the ratios mean anything)" : ""}`,
    `Y = ${r.input === "plain" ? "X" : r.input === "rmsnorm" ? "RMSNorm(X)" : "SwiGLU(X)"}·Wᵀ, in ${r.inDim} → out ${r.outDim}, ${r.weights} weights; ` +
    `${r.warmup} warm-up run${r.warmup === 1 ? "" : "s"} each, then up to ${r.rounds} rounds in rotating order (at least 3 past a 20 s budget), ${r.dispatches} dispatch${r.dispatches === 1 ? "" : "es"} per sample (${r.timing}); ` +
    "ms per dispatch: median (range); speed-up: the default's time over the candidate's, per round"
  ]
  return [...head, ...r.points.flatMap((p) => {
    const cells = p.entries.map((e) => [
      `${e.candidate}${e.isDefault ? " (default)" : ""}`, e.kernel, valueWithRange(e.ms, 3), e.gflops.toFixed(1), e.isDefault ? "—" : ratioPhrase(e.speedUp)
    ])
    const header = ["candidate", "kernel", "ms", "GFLOP/s", "vs default"]
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
    const line = (c: ReadonlyArray<string>) => `  ${c.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")}`
    return ["", `${p.rows} row${p.rows === 1 ? "" : "s"} (${p.regime === "decode" ? "decoding" : "prefill"}, ${p.rounds} rounds)`, line(header), ...cells.map(line)]
  })]
}
