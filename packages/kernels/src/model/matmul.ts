/**
 * Projection matmul: Y[r][o] = (accumulate ? Y[r][o] : 0) + s_r · Σ_i in(r, i)·W[o][i] + bias[o]
 * with W stored [out][in] row-major, as in Hugging Face checkpoints (Y = in(X)·Wᵀ).
 *
 * Input options of a binding (`input`; the prologue, see matmulShared.wgsl.ts):
 * - absent: in = X, s_r = 1.
 * - `{ kind: "rmsnorm", weight, eps }`: y = (x ⊙ rsqrt(mean(x²) + eps) ⊙ γ)·Wᵀ,
 *   i.e. in = X ⊙ γ and s_r = 1/√(mean_i X[r][i]² + eps), the row's mean
 *   square computed inside the kernel (each workgroup for its own rows), so
 *   the separate RMSNorm dispatch and its output buffer can go.
 * - `{ kind: "swiglu" }`: X is [rows][2·inDim], gate then up, as the fused
 *   gate/up projection writes it, and in = silu(gate)·up (the formula of
 *   swiglu.ts), so the SwiGLU dispatch and its h buffer can go.
 * Every kernel below implements every option, with bias, accumulate (the fused
 * residual add of o-proj and down-proj) and 16-bit weights. A kernel compiles
 * one pipeline per input kind it is created for (`inputs` of create).
 *
 * Two regimes, chosen per step by the row count, each with named candidates
 * (MATMUL_CANDIDATES; one file per kernel, the formula at its top):
 * - decoding, rows ≤ 8 (memory bound): "gemv" (32 lanes per column, scalar
 *   loads), "gemv-vec4" (a workgroup per 4 columns, vec4 loads, each weight
 *   read once; subgroup or workgroup reduction), "register" (barrier-free 1×4
 *   register tiles over all rows);
 * - prefill, more rows: "tiled64" (64×64 tiles through workgroup memory,
 *   scalar loads), "blocked64" / "blocked128" (register-blocked GEMM, 64×64 /
 *   128×64 tiles of 4×4 / 8×4 blocks, vec4 loads, padded double-buffered
 *   slices; smaller tiles where the device's limits do not allow them),
 *   "register" (barrier-free 4×4 register tiles), and where the device has
 *   matrix units (chromium-experimental-subgroup-matrix) and the weights are
 *   f16, "matrix" (f32 rows split into f16 halves, both multiplied on them;
 *   matmulMatrix.wgsl.ts). A driver may abort the process building it, so the
 *   tuner offers it only where its probe passed in a process of its own
 *   (tune/matrixProbe.ts).
 * The kernels that compute four adjacent columns in one invocation (register
 * and the blocked GEMMs) also offer the q/k/v projection a "rope-append"
 * output (MatmulOptions.ropeAppend; matmulShared.wgsl.ts): RoPE and the KV
 * append in the epilogue, so that their dispatch of its own can go.
 * The default choice is by device (KernelVariant): "gpu" takes gemv and
 * tiled64, "software" register for both; `create` takes any other
 * `{ decode, prefill }` pair, so a tuner can time the candidates, and a bound
 * matmul says which kernels it runs (BoundMatmul.uses).
 *
 * W is f32, f16 or bf16 (see weightType.ts): 16-bit weights are read as
 * native f16 where the device has shader-f16 and through packed u32 words
 * elsewhere, widened to f32 exactly; X, γ, the accumulation and Y stay f32.
 */
import { Data } from "effect"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { uniformBuffer } from "../gpu/resources.ts"
import type { KvDtype } from "../attention/kvStorage.ts"
import type { RopeAppendOutput } from "./ropeAppend.ts"
import { type WeightStorage, type WeightType, weightStorageFor } from "./weightType.ts"
import {
  type BoundDispatch, defaultVariant, dispatch, grid2, type KernelVariant, packParams, rowWorkgroupSize
} from "./common.ts"
import { blockedCode, blockStorageBytes, blockThreads, type BlockTile, tileName } from "./matmulBlocked.wgsl.ts"
import { GEMV_LANES, GEMV_MAX_ROWS, gemvCode } from "./matmulGemv.wgsl.ts"
import { GEMV_VEC4_COLS, gemvVec4Code, gemvVec4StorageBytes, type GemvReduction } from "./matmulGemvVec4.wgsl.ts"
import { REGISTER_WG, registerCode, type RegisterTile } from "./matmulRegister.wgsl.ts"
import { MATMUL_INPUTS, type MatmulInput, type MatmulModule } from "./matmulShared.wgsl.ts"
import { matrixCode, matrixGrid, matrixStorageBytes, matrixWeightsProblem } from "./matmulMatrix.wgsl.ts"
import { tiledCode, tiledStorageBytes } from "./matmulTiled.wgsl.ts"
import { deviceMatrixUnits, type MatrixUnits } from "../subgroupMatrix/matrixOps.ts"

export { GEMV_MAX_ROWS } from "./matmulGemv.wgsl.ts"
export { MATMUL_INPUTS, type MatmulInput } from "./matmulShared.wgsl.ts"
export { MATRIX_TILE } from "./matmulMatrix.wgsl.ts"

/** The kernels a tuner may pick from, per regime. */
export const MATMUL_CANDIDATES = {
  decode: ["gemv", "gemv-vec4", "register"],
  prefill: ["tiled64", "blocked64", "blocked128", "register"]
} as const

export type DecodeMatmul = (typeof MATMUL_CANDIDATES.decode)[number]
/** The prefill kernel on the device's matrix units: not in MATMUL_CANDIDATES, as only some devices can build it (matrixMatmulProblem). */
export const MATRIX_MATMUL = "matrix"

export type PrefillMatmul = (typeof MATMUL_CANDIDATES.prefill)[number] | typeof MATRIX_MATMUL

/** Which kernel runs each regime: decoding (rows ≤ GEMV_MAX_ROWS) and prefill. */
export interface MatmulChoice {
  readonly decode: DecodeMatmul
  readonly prefill: PrefillMatmul
}

/** The choice of each device family: cooperative kernels on a GPU, barrier-free register tiles on a software adapter. */
export const defaultMatmulChoice = (variant: KernelVariant): MatmulChoice =>
  variant === "software" ? { decode: "register", prefill: "register" } : { decode: "gemv", prefill: "tiled64" }

/** What a binding reads as its input rows (see the header). */
export type MatmulInputOption =
  | { readonly kind: "plain" }
  | { readonly kind: "rmsnorm"; /** f32 [inDim] */ readonly weight: GPUBuffer; readonly eps: number }
  | { readonly kind: "swiglu" }

export interface MatmulBinding {
  /** f32 [rows][inDim] ([rows][2·inDim] for a swiglu input) */
  readonly x: GPUBuffer
  /** [outDim][inDim], of the kernel's weight type */
  readonly w: GPUBuffer
  /** f32 [outDim], or undefined for none */
  readonly bias?: GPUBuffer | undefined
  /** f32 [rows][outDim]; different from x */
  readonly y: GPUBuffer
  readonly count: GPUBuffer
  readonly inDim: number
  readonly outDim: number
  /** add into y instead of overwriting it (fused residual) */
  readonly accumulate?: boolean
  /** the prologue; default plain */
  readonly input?: MatmulInputOption
  /** RoPE and the KV append in the epilogue (RopeAppendKernel.epilogue); y is then q. Default: y is Y. */
  readonly output?: RopeAppendOutput | undefined
}

/** A binding the kernel cannot run, found before anything is built. */
export class InvalidMatmulBinding extends Data.TaggedError("InvalidMatmulBinding")<{
  readonly problem: string
}> {
  override get message(): string {
    return `matmul binding: ${this.problem}`
  }
}

export interface MatmulOptions {
  /** the input kinds bindings will use (default: plain only); each one is a pipeline per regime and load width */
  readonly inputs?: ReadonlyArray<MatmulInput>
  /** the matrix units the "matrix" kernel is written for (default: the device's own builtins, where it has them) */
  readonly matrixUnits?: MatrixUnits | undefined
  /**
   * Also build the rope-append output for bindings of this input kind and pool
   * type, in the regimes whose kernel stores four columns at once (the
   * others have none: BoundMatmul.covers); see ropeAppendOutputProblem.
   */
  readonly ropeAppend?: { readonly input: MatmulInput; readonly kvDtype: KvDtype } | undefined
}

/** Storage buffers a rope-append output binds: x, w, bias, y, γ (rmsnorm), positions, slots, turn table, K and V pools. */
const ropeAppendStorageBuffers = (input: MatmulInput): number => (input === "rmsnorm" ? 10 : 9)

/** Why `device` cannot bind a rope-append output for `input`, or undefined. */
export const ropeAppendOutputProblem = (device: GPUDevice, input: MatmulInput): string | undefined => {
  const needed = ropeAppendStorageBuffers(input)
  const has = device.limits.maxStorageBuffersPerShaderStage
  return has < needed ? `a rope-append output binds ${needed} storage buffers; this device binds ${has} per shader stage` : undefined
}

/** Why the "matrix" kernel cannot run on `device` for weights held as `storage`, or undefined. */
export const matrixMatmulProblem = (
  device: GPUDevice, storage: WeightStorage, units: MatrixUnits | string = deviceMatrixUnits(device)
): string | undefined => {
  if (typeof units === "string") return units
  const weights = matrixWeightsProblem(storage)
  if (weights !== undefined) return weights
  if (units.subgroupSize > invocationLimit(device)) return `a subgroup of ${units.subgroupSize} is more invocations than a workgroup may have here`
  const bytes = matrixStorageBytes(units)
  if (bytes > device.limits.maxComputeWorkgroupStorageSize) return `it needs ${bytes} bytes of workgroup memory, more than the device's ${device.limits.maxComputeWorkgroupStorageSize}`
  return undefined
}

/** One candidate as built for a device: its pipeline label, its code and its grid. */
interface PathSpec {
  /** e.g. "matmul-blocked-128x64-8x4": the candidate and how it was sized for the device */
  readonly label: string
  /** has a vec4 form (taken when inDim % 4 = 0); otherwise one scalar form serves every inDim */
  readonly vec4: boolean
  /** computes four adjacent columns, 4-aligned, in one invocation: can have a rope-append output */
  readonly quads: boolean
  readonly code: (module: MatmulModule) => string
  readonly grid: (rows: number, outDim: number) => readonly [number, number]
}

const DECODE_TILE: RegisterTile = { rb: 1, cb: 4, rowsPer: GEMV_MAX_ROWS }
const PREFILL_TILE: RegisterTile = { rb: 4, cb: 4, rowsPer: 16 }

const registerSpec = (regime: "decode" | "prefill"): PathSpec => {
  const tile = regime === "decode" ? DECODE_TILE : PREFILL_TILE
  return {
    label: `matmul-register-${regime}`,
    vec4: true,
    quads: true,
    code: (module) => registerCode(tile, module),
    grid: (rows, outDim) => grid2(Math.ceil((Math.ceil(outDim / tile.cb) * Math.ceil(rows / tile.rowsPer)) / REGISTER_WG))
  }
}

/** Tiles of the blocked GEMMs, largest first: the first the device's limits allow is built. */
const BLOCK_TILES: Record<"blocked64" | "blocked128", ReadonlyArray<BlockTile>> = {
  blocked128: [{ bm: 128, bn: 64, tm: 8, tn: 4 }, { bm: 64, bn: 64, tm: 8, tn: 4 }, { bm: 32, bn: 32, tm: 4, tn: 4 }],
  blocked64: [{ bm: 64, bn: 64, tm: 4, tn: 4 }, { bm: 64, bn: 64, tm: 8, tn: 4 }, { bm: 32, bn: 32, tm: 4, tn: 4 }]
}

const invocationLimit = (device: GPUDevice): number =>
  Math.min(device.limits.maxComputeInvocationsPerWorkgroup, device.limits.maxComputeWorkgroupSizeX)

/** The first tile of `tiles` within the device's invocation and workgroup-memory limits (WebGPU's minimums admit the last). */
export const fittingBlockTile = (device: GPUDevice, tiles: ReadonlyArray<BlockTile>): BlockTile =>
  tiles.find((t) => blockThreads(t) <= invocationLimit(device) && blockStorageBytes(t) <= device.limits.maxComputeWorkgroupStorageSize) ??
    tiles.at(-1)!

const prefillSpec = (device: GPUDevice, name: PrefillMatmul, units: MatrixUnits | string): PathSpec => {
  switch (name) {
    case "matrix": {
      // create checked matrixMatmulProblem
      const u = units as MatrixUnits
      return { label: `matmul-matrix-${u.config.M}x${u.config.N}x${u.config.K}-${u.ops.name}`, vec4: false, quads: false, code: (module) => matrixCode(u, module), grid: matrixGrid(u) }
    }
    case "register":
      return registerSpec("prefill")
    case "tiled64": {
      const big = device.limits.maxComputeInvocationsPerWorkgroup >= 256 &&
        device.limits.maxComputeWorkgroupStorageSize >= tiledStorageBytes(64)
      const t = big ? 64 : 32
      return { label: `matmul-tiled-${t}`, vec4: false, quads: false, code: (module) => tiledCode(t, module), grid: (rows, outDim) => [Math.ceil(outDim / t), Math.ceil(rows / t)] }
    }
    case "blocked64":
    case "blocked128": {
      const tile = fittingBlockTile(device, BLOCK_TILES[name])
      return {
        label: `matmul-blocked-${tileName(tile)}`,
        vec4: true,
        quads: true,
        code: (module) => blockedCode(tile, module),
        grid: (rows, outDim) => [Math.ceil(outDim / tile.bn), Math.ceil(rows / tile.bm)]
      }
    }
  }
}

/**
 * Whether WGSL here has the `subgroup_id` and `num_subgroups` builtins the
 * subgroup reduction needs: a browser says so in wgslLanguageFeatures; Dawn
 * in Node (no navigator.gpu) has them.
 */
const subgroupIdInWgsl = (): boolean => {
  const gpu = (globalThis as { navigator?: { gpu?: { wgslLanguageFeatures?: ReadonlySet<string> } } }).navigator?.gpu
  return gpu?.wgslLanguageFeatures?.has("subgroup_id") ?? true
}

/** The gemv-vec4 workgroup: the row-reduction size, halved for the tree until its partials fit workgroup memory. */
const gemvVec4Workgroup = (device: GPUDevice, reduction: GemvReduction, input: MatmulInput): number => {
  let wg = rowWorkgroupSize(device)
  while (wg > 32 && gemvVec4StorageBytes(wg, reduction, input) > device.limits.maxComputeWorkgroupStorageSize) wg /= 2
  return wg
}

const decodeSpec = (device: GPUDevice, name: DecodeMatmul, capabilities: GpuCapabilities): PathSpec => {
  switch (name) {
    case "register":
      return registerSpec("decode")
    case "gemv": {
      const wg = rowWorkgroupSize(device)
      return { label: "matmul-gemv", vec4: false, quads: false, code: (module) => gemvCode(wg, module), grid: (_rows, outDim) => grid2(Math.ceil(outDim / (wg / GEMV_LANES))) }
    }
    case "gemv-vec4": {
      const reduction: GemvReduction = capabilities.subgroups && subgroupIdInWgsl() ? "subgroup" : "workgroup"
      return {
        label: `matmul-gemv-vec4-${reduction}`,
        vec4: true,
        quads: false,
        code: (module) => gemvVec4Code(gemvVec4Workgroup(device, reduction, module.input), reduction, module),
        grid: (_rows, outDim) => grid2(Math.ceil(outDim / GEMV_VEC4_COLS))
      }
    }
  }
}

/** A compiled path: pipeline, grid and the label that says what it is. */
interface MatmulPath {
  readonly label: string
  readonly pipeline: GPUComputePipeline
  readonly grid: (rows: number, outDim: number) => readonly [number, number]
}

type Regime = "decode" | "prefill"
const REGIMES: ReadonlyArray<Regime> = ["decode", "prefill"]
const pathKey = (regime: Regime, width: 1 | 4, input: MatmulInput, ropeAppend?: KvDtype): string =>
  `${regime} ${width} ${input}${ropeAppend === undefined ? "" : ` rope-append ${ropeAppend}`}`

const buildPaths = async (
  device: GPUDevice, specs: Record<Regime, PathSpec>, weights: WeightStorage, inputs: ReadonlyArray<MatmulInput>,
  rope: MatmulOptions["ropeAppend"]
): Promise<ReadonlyMap<string, MatmulPath>> => {
  const plain = REGIMES.flatMap((regime) =>
    ([4, 1] as const).flatMap((asked) => inputs.map((input) => ({ regime, asked, input, ropeAppend: undefined as KvDtype | undefined }))))
  const roped = rope === undefined ? [] : REGIMES.filter((regime) => specs[regime].quads)
    .flatMap((regime) => ([4, 1] as const).map((asked) => ({ regime, asked, input: rope.input, ropeAppend: rope.kvDtype as KvDtype | undefined })))
  const built = await Promise.all([...plain, ...roped].map(async ({ regime, asked, input, ropeAppend }) => {
    const spec = specs[regime]
    const width = spec.vec4 ? asked : 1
    const label = [
      spec.label, width === 4 ? "vec4" : "", input === "plain" ? "" : input, weights === "f32" ? "" : weights,
      ropeAppend === undefined ? "" : `rope-append-${ropeAppend}`
    ].filter((part) => part !== "").join("-")
    const pipeline = await sharedComputePipeline(device, label, spec.code({ weights, input, width, ropeAppend }))
    return [pathKey(regime, asked, input, ropeAppend), { label, pipeline, grid: spec.grid }] as const
  }))
  return new Map(built)
}

/** What one regime of a bound matmul runs: the candidate and its pipeline's label (tile, loads, reduction, input, weights). */
export interface MatmulPathUse {
  readonly candidate: string
  readonly kernel: string
}

/** The kernel of each regime; a regime a rope-append binding does not cover has none. */
export interface MatmulUses {
  readonly decode: MatmulPathUse | undefined
  readonly prefill: MatmulPathUse | undefined
}

const problemsOf = (b: MatmulBinding, inputs: ReadonlyArray<MatmulInput>, rope: MatmulOptions["ropeAppend"]): ReadonlyArray<string> => {
  const input = b.input ?? { kind: "plain" }
  const problems: Array<string> = []
  if (!Number.isInteger(b.inDim) || b.inDim < 1) problems.push(`inDim must be a positive integer, got ${b.inDim}`)
  if (!Number.isInteger(b.outDim) || b.outDim < 1) problems.push(`outDim must be a positive integer, got ${b.outDim}`)
  if (b.x === b.y) problems.push("y must be a different buffer from x")
  if (!inputs.includes(input.kind)) {
    problems.push(`a ${input.kind} input, but the kernel was created for ${inputs.join(", ")} (add "${input.kind}" to its inputs)`)
  }
  if (input.kind === "rmsnorm") {
    if (!(Number.isFinite(input.eps) && input.eps >= 0)) problems.push(`rmsnorm eps must be finite and at least 0, got ${input.eps}`)
    if (input.weight.size < b.inDim * 4) problems.push(`rmsnorm weight holds ${input.weight.size} bytes, fewer than inDim = ${b.inDim} floats`)
  }
  const out = b.output
  if (out !== undefined) {
    if (rope === undefined || rope.input !== input.kind || rope.kvDtype !== out.kvDtype) {
      problems.push(`a rope-append output of a ${input.kind} input to ${out.kvDtype} pools, but the kernel was created for ${
        rope === undefined ? "none" : `a ${rope.input} input to ${rope.kvDtype} pools`} (MatmulOptions.ropeAppend)`)
    }
    if (b.accumulate === true) problems.push("a rope-append output cannot accumulate")
    if (b.outDim !== out.qkvDim) problems.push(`a rope-append output computes the q/k/v row of ${out.qkvDim} columns, but outDim = ${b.outDim}`)
  }
  return problems
}

export class MatmulKernel {
  private constructor(
    readonly device: GPUDevice,
    /** the family asked for; with an explicit choice, the device's default family (`choice` says what runs) */
    readonly variant: KernelVariant,
    readonly choice: MatmulChoice,
    /** how the kernel reads W (from the weight type and the device's capabilities) */
    readonly weightStorage: WeightStorage,
    /** the input kinds it has pipelines for */
    readonly inputs: ReadonlyArray<MatmulInput>,
    private readonly paths: ReadonlyMap<string, MatmulPath>,
    private readonly noBias: GPUBuffer,
    /** the rope-append output it has pipelines for (MatmulOptions.ropeAppend) */
    readonly ropeAppend: MatmulOptions["ropeAppend"]
  ) {}

  static async create(
    device: GPUDevice,
    /** a device family's default choice, or the kernel of each regime */
    variant: KernelVariant | MatmulChoice = defaultVariant(device),
    /** how W is held: f32, or f16 / bf16 two to a word (see weightType.ts) */
    weights: WeightType = "f32",
    /** what the device can do (default: its own record); f16 is read natively where shaderF16 is true, subgroups reduce where subgroups is */
    capabilities: GpuCapabilities = capabilitiesOf(device),
    options: MatmulOptions = {}
  ): Promise<MatmulKernel> {
    const choice = typeof variant === "string" ? defaultMatmulChoice(variant) : variant
    const inputs: ReadonlyArray<MatmulInput> = [...new Set<MatmulInput>(options.inputs ?? ["plain"])]
    const unknown = inputs.filter((i) => !MATMUL_INPUTS.includes(i))
    if (unknown.length > 0 || inputs.length === 0) {
      throw new InvalidMatmulBinding({ problem: `inputs must be some of ${MATMUL_INPUTS.join(", ")}, got ${inputs.join(", ") || "none"}` })
    }
    const storage = weightStorageFor(weights, capabilities)
    const units = options.matrixUnits ?? deviceMatrixUnits(device)
    const matrixProblem = choice.prefill === MATRIX_MATMUL ? matrixMatmulProblem(device, storage, units) : undefined
    if (matrixProblem !== undefined) throw new InvalidMatmulBinding({ problem: `the matrix kernel cannot run here: ${matrixProblem}` })
    const rope = options.ropeAppend
    const ropeProblem = rope === undefined ? undefined : ropeAppendOutputProblem(device, rope.input)
    if (ropeProblem !== undefined) throw new InvalidMatmulBinding({ problem: ropeProblem })
    const specs = { decode: decodeSpec(device, choice.decode, capabilities), prefill: prefillSpec(device, choice.prefill, units) }
    const paths = await buildPaths(device, specs, storage, inputs, rope)
    const noBias = device.createBuffer({ label: "matmul-no-bias", size: 16, usage: GPUBufferUsage.STORAGE })
    const family = typeof variant === "string" ? variant : defaultVariant(device)
    return new MatmulKernel(device, family, choice, storage, inputs, paths, noBias, rope)
  }

  /**
   * Binds the buffers once for any row count; throws InvalidMatmulBinding for
   * a binding it cannot run. A binding with a rope-append output covers only
   * the regimes whose kernel has one (BoundMatmul.covers).
   */
  bind(b: MatmulBinding): BoundMatmul {
    const problems = problemsOf(b, this.inputs, this.ropeAppend)
    if (problems.length > 0) throw new InvalidMatmulBinding({ problem: problems.join("; ") })
    const input = b.input ?? { kind: "plain" }
    const out = b.output
    const params = uniformBuffer(this.device, "matmul-params", packParams([
      ["u32", b.inDim], ["u32", b.outDim], ["u32", b.bias ? 1 : 0], ["u32", b.accumulate ? 1 : 0],
      ["f32", input.kind === "rmsnorm" ? input.eps : 0]
    ]))
    // binding number → buffer (6: γ, 7–12: the rope-append output; see matmulShared.wgsl.ts)
    const buffers: Array<readonly [number, GPUBuffer]> = [params, b.count, b.x, b.w, b.bias ?? this.noBias, b.y].map((buffer, i) => [i, buffer] as const)
    if (input.kind === "rmsnorm") buffers.push([6, input.weight])
    if (out !== undefined) [out.params, out.positions, out.slots, out.turnTable, out.kPool, out.vPool].forEach((buffer, i) => buffers.push([7 + i, buffer]))
    const width = b.inDim % 4 === 0 ? 4 : 1
    const key = (regime: Regime) => pathKey(regime, width, input.kind, out?.kvDtype)
    const bound = (regime: Regime): BoundMatmulPath | undefined => {
      const path = this.paths.get(key(regime))
      if (path === undefined) return undefined
      const bindGroup = this.device.createBindGroup({
        label: path.label,
        layout: path.pipeline.getBindGroupLayout(0),
        entries: buffers.map(([binding, buffer]) => ({ binding, resource: { buffer } }))
      })
      return { pipeline: path.pipeline, bindGroup, grid: (rows) => path.grid(rows, b.outDim) }
    }
    const use = (regime: Regime): MatmulPathUse | undefined => {
      const path = this.paths.get(key(regime))
      return path && { candidate: this.choice[regime], kernel: path.label }
    }
    return new BoundMatmul(bound("decode"), bound("prefill"), params, { decode: use("decode"), prefill: use("prefill") })
  }

  destroy(): void {
    this.noBias.destroy()
  }
}

interface BoundMatmulPath extends BoundDispatch {
  readonly grid: (rows: number) => readonly [number, number]
}

export class BoundMatmul {
  constructor(
    private readonly decode: BoundMatmulPath | undefined,
    private readonly prefill: BoundMatmulPath | undefined,
    private readonly params: GPUBuffer,
    /** the kernels this binding runs, per regime */
    readonly uses: MatmulUses
  ) {}

  /** Whether a step of `rows` rows has a kernel here (every binding but a rope-append one covers every count). */
  covers(rows: number): boolean {
    return (rows <= GEMV_MAX_ROWS ? this.decode : this.prefill) !== undefined
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const path = rows <= GEMV_MAX_ROWS ? this.decode : this.prefill
    if (path === undefined) throw new RangeError(`matmul: this rope-append binding has no kernel for ${rows} rows (see covers)`)
    const [x, y] = path.grid(rows)
    dispatch(pass, path, x, y)
  }

  destroy(): void {
    this.params.destroy()
  }
}

export const referenceMatmul = (
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  inDim: number,
  outDim: number,
  bias?: ArrayLike<number>
): Float64Array => {
  const rows = x.length / inDim
  const y = new Float64Array(rows * outDim)
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias[o]! : 0
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[o * inDim + i]!
      y[r * outDim + o] = s
    }
  }
  return y
}
