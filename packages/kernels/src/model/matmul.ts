/**
 * Projection matmul: Y[r][o] = (accumulate ? Y[r][o] : 0) + Σ_i X[r][i]·W[o][i] + bias[o]
 * with W stored [out][in] row-major, as in Hugging Face checkpoints (Y = X·Wᵀ).
 *
 * Two paths, chosen per step by the row count:
 * - rows ≤ 8 (decoding): a GEMV-style kernel, memory bound. Each 32-lane group
 *   owns one output column and streams its W row once for all rows, so W is
 *   read exactly once per step.
 * - more rows (prefill): a tiled GEMM through workgroup memory, T×T output
 *   tiles (T = 64 with 256 invocations, else 32), 4×4 outputs per thread,
 *   K slices of 16.
 * `accumulate` fuses the residual add of o-proj and down-proj.
 *
 * The "software" variant (see KernelVariant) replaces both with barrier-free
 * register tiles read straight from global memory: each invocation computes an
 * RB×CB block of Y (decoding 1×4 over all ≤ 8 rows, so no row is computed twice;
 * prefill 4×4, up to 16 rows per invocation), with vec4 loads along the inner
 * dimension when inDim % 4 = 0 and scalar loads otherwise.
 *
 * W is f32, f16 or bf16 (see weightType.ts): 16-bit weights are read as
 * native f16 where the device has shader-f16 and through packed u32 words
 * elsewhere, widened to f32 exactly; X, the accumulation and Y stay f32.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { type WeightStorage, type WeightType, weightArrayWgsl, weightEnableWgsl, weightStorageFor } from "./weightType.ts"
import {
  bindAll, defaultVariant, dispatch, grid2, type KernelVariant, MAX_GRID, packParams, rowWorkgroupSize,
  type BoundDispatch
} from "./common.ts"

/** Largest row count that takes the GEMV path. */
export const GEMV_MAX_ROWS = 8
const BK = 16
const LANES = 32

const headerOf = (weights: WeightStorage, vec4: boolean): string => wgsl`${weightEnableWgsl(weights)}
struct Params { inDim: u32, outDim: u32, hasBias: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> x: array<${vec4 ? "vec4f" : "f32"}>;
${weightArrayWgsl(weights, 3, "w", "loadW", vec4)}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn finish(r: u32, o: u32, dot: f32) {
  var v = dot;
  if (params.hasBias != 0u) { v += bias[o]; }
  let at = r * params.outDim + o;
  if (params.accumulate != 0u) { v += y[at]; }
  y[at] = v;
}
`
const tiledCode = (t: number, weights: WeightStorage): string => {
  const side = t / 4
  return wgsl`${headerOf(weights, false)}
var<workgroup> xs: array<f32, ${t * BK}>;
var<workgroup> ws: array<f32, ${t * BK}>;

@compute @workgroup_size(${side * side})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let rows = count.x;
  let row0 = wg.y * ${t}u;
  let col0 = wg.x * ${t}u;
  let tx = li % ${side}u;
  let ty = li / ${side}u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < params.inDim; k0 += ${BK}u) {
    for (var e = li; e < ${t * BK}u; e += ${side * side}u) {
      let m = e / ${BK}u;
      let k = e % ${BK}u;
      var xv = 0.0;
      var wv = 0.0;
      if (row0 + m < rows && k0 + k < params.inDim) { xv = x[(row0 + m) * params.inDim + k0 + k]; }
      if (col0 + m < params.outDim && k0 + k < params.inDim) { wv = loadW((col0 + m) * params.inDim + k0 + k); }
      xs[k * ${t}u + m] = xv;
      ws[k * ${t}u + m] = wv;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = xs[k * ${t}u + ty + i * ${side}u];
        b[i] = ws[k * ${t}u + tx + i * ${side}u];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + ty + i * ${side}u;
    for (var j = 0u; j < 4u; j++) {
      let o = col0 + tx + j * ${side}u;
      if (r < rows && o < params.outDim) { finish(r, o, acc[i][j]); }
    }
  }
}
`
}

const gemvCode = (wg: number, weights: WeightStorage): string => {
  const groups = wg / LANES
  return wgsl`${headerOf(weights, false)}
var<workgroup> partial: array<f32, ${wg * GEMV_MAX_ROWS}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let rows = min(count.x, ${GEMV_MAX_ROWS}u);
  let lane = li % ${LANES}u;
  let group = li / ${LANES}u;
  let o = (wid.y * ${MAX_GRID}u + wid.x) * ${groups}u + group;
  var acc: array<f32, ${GEMV_MAX_ROWS}>;
  if (o < params.outDim) {
    let wRow = o * params.inDim;
    for (var k = lane; k < params.inDim; k += ${LANES}u) {
      let wv = loadW(wRow + k);
      for (var r = 0u; r < rows; r++) { acc[r] += x[r * params.inDim + k] * wv; }
    }
  }
  for (var r = 0u; r < ${GEMV_MAX_ROWS}u; r++) { partial[r * ${wg}u + li] = acc[r]; }
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var r = 0u; r < ${GEMV_MAX_ROWS}u; r++) { partial[r * ${wg}u + li] += partial[r * ${wg}u + li + s]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && o < params.outDim) {
    for (var r = 0u; r < rows; r++) { finish(r, o, partial[r * ${wg}u + li]); }
  }
}
`
}

/** Register tile of the software variant: RB×CB outputs per step, up to `rowsPer` rows per invocation. */
interface RegisterTile {
  readonly rb: number
  readonly cb: number
  readonly rowsPer: number
}
const DECODE_TILE: RegisterTile = { rb: 1, cb: 4, rowsPer: GEMV_MAX_ROWS }
const PREFILL_TILE: RegisterTile = { rb: 4, cb: 4, rowsPer: 16 }
const SOFTWARE_WG = 16

/**
 * Invocation id = rowGroup · ⌈outDim/CB⌉ + colBlock. Rows and columns past the
 * end are clamped for loading (a few redundant products) and skipped on store.
 */
const registerCode = ({ rb, cb, rowsPer }: RegisterTile, vec: boolean, weights: WeightStorage): string => {
  const width = vec ? 4 : 1
  const I = Array.from({ length: rb }, (_, i) => i)
  const J = Array.from({ length: cb }, (_, j) => j)
  const each = (f: (i: number, j: number) => string): string => I.flatMap((i) => J.map((j) => f(i, j))).join("\n      ")
  const total = (a: string): string => (vec ? `${a}.x + ${a}.y + ${a}.z + ${a}.w` : a)
  return wgsl`${headerOf(weights, vec)}
@compute @workgroup_size(${SOFTWARE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wid.y * ${MAX_GRID}u + wid.x) * ${SOFTWARE_WG}u + li;
  let colBlocks = (params.outDim + ${cb - 1}u) / ${cb}u;
  let c0 = (id % colBlocks) * ${cb}u;
  let rStart = (id / colBlocks) * ${rowsPer}u;
  let rEnd = min(count.x, rStart + ${rowsPer}u);
  if (rStart >= rEnd) { return; }
  let n = params.inDim / ${width}u;
  ${J.map((j) => `let w${j} = min(c0 + ${j}u, params.outDim - 1u) * n;`).join("\n  ")}
  for (var r0 = rStart; r0 < rEnd; r0 += ${rb}u) {
    ${I.map((i) => `let x${i} = min(r0 + ${i}u, rEnd - 1u) * n;`).join("\n    ")}
    ${each((i, j) => `var a${i}${j} = ${vec ? "vec4f" : "f32"}();`)}
    for (var k = 0u; k < n; k++) {
      ${I.map((i) => `let xv${i} = x[x${i} + k];`).join("\n      ")}
      ${J.map((j) => `let wv${j} = loadW(w${j} + k);`).join("\n      ")}
      ${each((i, j) => `a${i}${j} += xv${i} * wv${j};`)}
    }
    ${I.flatMap((i) => J.map((j) =>
      `if (r0 + ${i}u < rEnd && c0 + ${j}u < params.outDim) { finish(r0 + ${i}u, c0 + ${j}u, ${total(`a${i}${j}`)}); }`
    )).join("\n    ")}
  }
}
`
}

export interface MatmulBinding {
  /** f32 [rows][inDim] */
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
}

/** A pipeline for one row regime and its workgroup grid for a row count. */
interface MatmulPath {
  readonly pipeline: GPUComputePipeline
  readonly grid: (rows: number, outDim: number) => readonly [number, number]
}

const registerPath = (pipeline: GPUComputePipeline, tile: RegisterTile): MatmulPath => ({
  pipeline,
  grid: (rows, outDim) => grid2(Math.ceil((Math.ceil(outDim / tile.cb) * Math.ceil(rows / tile.rowsPer)) / SOFTWARE_WG))
})

/** The paths of one variant: decoding (rows ≤ GEMV_MAX_ROWS) and prefill, for inDim % 4 = 0 and otherwise. */
interface MatmulPaths {
  readonly decode: MatmulPath
  readonly prefill: MatmulPath
}

/** The software variant's four register-tile pipelines (vec4 and scalar loads, decoding and prefill). */
const softwarePaths = async (device: GPUDevice, name: (label: string) => string, weights: WeightStorage) => {
  const [decode4, prefill4, decode1, prefill1] = await Promise.all([
    sharedComputePipeline(device, name("matmul-software-decode-vec4"), registerCode(DECODE_TILE, true, weights)),
    sharedComputePipeline(device, name("matmul-software-prefill-vec4"), registerCode(PREFILL_TILE, true, weights)),
    sharedComputePipeline(device, name("matmul-software-decode"), registerCode(DECODE_TILE, false, weights)),
    sharedComputePipeline(device, name("matmul-software-prefill"), registerCode(PREFILL_TILE, false, weights))
  ])
  const vec4: MatmulPaths = { decode: registerPath(decode4, DECODE_TILE), prefill: registerPath(prefill4, PREFILL_TILE) }
  const scalar: MatmulPaths = { decode: registerPath(decode1, DECODE_TILE), prefill: registerPath(prefill1, PREFILL_TILE) }
  return { vec4, scalar }
}

/** The GPU variant's GEMV and tiled GEMM; they load scalars, so one set of paths serves every inDim. */
const gpuPaths = async (device: GPUDevice, name: (label: string) => string, weights: WeightStorage) => {
  const big = device.limits.maxComputeInvocationsPerWorkgroup >= 256 &&
    device.limits.maxComputeWorkgroupStorageSize >= 2 * 64 * BK * 4
  const tile = big ? 64 : 32
  const wg = rowWorkgroupSize(device)
  const [tiled, gemv] = await Promise.all([
    sharedComputePipeline(device, name(`matmul-tiled-${tile}`), tiledCode(tile, weights)),
    sharedComputePipeline(device, name("matmul-gemv"), gemvCode(wg, weights))
  ])
  const paths: MatmulPaths = {
    decode: { pipeline: gemv, grid: (_rows, outDim) => grid2(Math.ceil(outDim / (wg / LANES))) },
    prefill: { pipeline: tiled, grid: (rows, outDim) => [Math.ceil(outDim / tile), Math.ceil(rows / tile)] }
  }
  return { vec4: paths, scalar: paths }
}

export class MatmulKernel {
  private constructor(
    readonly device: GPUDevice,
    readonly variant: KernelVariant,
    /** how the kernel reads W (from the weight type and the device's capabilities) */
    readonly weightStorage: WeightStorage,
    private readonly vec4: MatmulPaths,
    private readonly scalar: MatmulPaths,
    private readonly noBias: GPUBuffer
  ) {}

  static async create(
    device: GPUDevice,
    variant: KernelVariant = defaultVariant(device),
    /** how W is held: f32, or f16 / bf16 two to a word (see weightType.ts) */
    weights: WeightType = "f32",
    /** what the device can do (default: its own record); f16 is read natively where shaderF16 is true */
    capabilities: GpuCapabilities = capabilitiesOf(device)
  ): Promise<MatmulKernel> {
    const storage = weightStorageFor(weights, capabilities)
    const name = (label: string) => (storage === "f32" ? label : `${label}-${storage}`)
    const { vec4, scalar } = await (variant === "software" ? softwarePaths : gpuPaths)(device, name, storage)
    const noBias = device.createBuffer({ label: "matmul-no-bias", size: 16, usage: GPUBufferUsage.STORAGE })
    return new MatmulKernel(device, variant, storage, vec4, scalar, noBias)
  }

  bind(b: MatmulBinding): BoundMatmul {
    const params = uniformBuffer(this.device, "matmul-params", packParams([
      ["u32", b.inDim], ["u32", b.outDim], ["u32", b.bias ? 1 : 0], ["u32", b.accumulate ? 1 : 0]
    ]))
    const buffers = [params, b.count, b.x, b.w, b.bias ?? this.noBias, b.y]
    const paths = b.inDim % 4 === 0 ? this.vec4 : this.scalar
    const bound = (path: MatmulPath, label: string): BoundMatmulPath => ({
      pipeline: path.pipeline,
      bindGroup: bindAll(this.device, path.pipeline, label, buffers),
      grid: (rows) => path.grid(rows, b.outDim)
    })
    return new BoundMatmul(bound(paths.decode, "matmul-decode"), bound(paths.prefill, "matmul-prefill"), params)
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
    private readonly decode: BoundMatmulPath,
    private readonly prefill: BoundMatmulPath,
    private readonly params: GPUBuffer
  ) {}

  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const path = rows <= GEMV_MAX_ROWS ? this.decode : this.prefill
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
