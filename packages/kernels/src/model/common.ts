/**
 * Pieces shared by the model kernels: the counter-based hash (identical in WGSL
 * and TypeScript, so CPU references reproduce GPU randomness bit for bit), the
 * packing of uniform parameter blocks, the row-count uniform, and grids that
 * stay under the 65535-workgroups-per-dimension limit.
 */
import { isSoftwareDevice } from "../gpu/adapters.ts"
import { uniformBuffer, wgsl } from "../gpu/resources.ts"

/** PCG hash (O'Neill's pcg-rxs-m-xs 32-bit output) of one u32. */
export const PCG_WGSL = wgsl`
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
// Hash of four counters; chaining keeps every counter significant.
fn hash4(a: u32, b: u32, c: u32, d: u32) -> u32 {
  return pcg(d + pcg(c + pcg(b + pcg(a))));
}
// Uniform in the open interval (0, 1): 24 random bits, centred in their cell.
fn unitOpen(h: u32) -> f32 {
  return f32(h >> 8u) * 5.9604644775390625e-8 + 2.98023223876953125e-8;
}
`

export const pcg = (v: number): number => {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0
  return ((word >>> 22) ^ word) >>> 0
}

export const hash4 = (a: number, b: number, c: number, d: number): number =>
  pcg((d + pcg((c + pcg((b + pcg(a)) >>> 0)) >>> 0)) >>> 0)

export const unitOpen = (h: number): number => (h >>> 8) * 5.9604644775390625e-8 + 2.98023223876953125e-8

export type ParamField = readonly ["u32" | "f32", number]

/** Packs u32/f32 fields into 32-bit words, padded to 16 bytes (uniform alignment). */
export const packParams = (fields: ReadonlyArray<ParamField>): Uint32Array => {
  const words = new Uint32Array(Math.max(4, Math.ceil(fields.length / 4) * 4))
  const floats = new Float32Array(words.buffer)
  fields.forEach(([kind, value], i) => {
    if (kind === "u32") words[i] = value >>> 0
    else floats[i] = value
  })
  return words
}

/**
 * A uniform holding the number of rows of the current step (u32 at offset 0).
 * Kernels bound once for a maximum row count read the actual count from it, so
 * bind groups are reused across steps and only 4 bytes change per step.
 */
export interface RowCount {
  readonly buffer: GPUBuffer
  set(rows: number): void
  destroy(): void
}

export const createRowCount = (device: GPUDevice, label: string, rows = 0): RowCount => {
  const buffer = uniformBuffer(device, label, Uint32Array.of(rows, 0, 0, 0))
  return {
    buffer,
    set: (rows) => device.queue.writeBuffer(buffer, 0, Uint32Array.of(rows)),
    destroy: () => buffer.destroy()
  }
}

export const MAX_GRID = 65535

/** A 2-D grid of at least `groups` workgroups; kernels flatten it as y * MAX_GRID + x. */
export const grid2 = (groups: number): readonly [number, number] =>
  groups <= MAX_GRID ? [Math.max(1, groups), 1] : [MAX_GRID, Math.ceil(groups / MAX_GRID)]

/** A pipeline plus one bind group: what one dispatch needs, built once and encoded every step. */
export interface BoundDispatch {
  readonly pipeline: GPUComputePipeline
  readonly bindGroup: GPUBindGroup
}

export const dispatch = (pass: GPUComputePassEncoder, d: BoundDispatch, x: number, y = 1, z = 1): void => {
  pass.setPipeline(d.pipeline)
  pass.setBindGroup(0, d.bindGroup)
  pass.dispatchWorkgroups(x, y, z)
}

/** Binds (buffer, offset 0, whole size) entries to bindings 0..n-1 of group 0. */
export const bindAll = (
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  label: string,
  buffers: ReadonlyArray<GPUBuffer>
): GPUBindGroup =>
  device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } }))
  })

/**
 * Which form of a kernel to build. "gpu": invocations cooperate through
 * workgroup memory and barriers (coalesced loads, tree reductions). "software":
 * barrier-free, each invocation computing whole outputs on its own, because on
 * a software adapter every barrier switches the CPU between all invocations of
 * the workgroup and costs far more than the arithmetic it synchronizes.
 */
export type KernelVariant = "gpu" | "software"

export const defaultVariant = (device: GPUDevice): KernelVariant => (isSoftwareDevice(device) ? "software" : "gpu")

/** Workgroup size for one-workgroup-per-row reductions, within the device's limits. */
export const rowWorkgroupSize = (device: GPUDevice): number =>
  Math.min(256, device.limits.maxComputeInvocationsPerWorkgroup, device.limits.maxComputeWorkgroupSizeX)

/**
 * Norm-wise relative error max|a − e| / max|e| (1 when both are all zeros is
 * avoided by the floor): the measure the kernel tests bound, since per-element
 * ratios blow up on outputs that cancel to near zero.
 */
export const relativeError = (actual: ArrayLike<number>, expected: ArrayLike<number>): number => {
  if (actual.length !== expected.length) return Infinity
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!)
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d)
    scale = Math.max(scale, Math.abs(expected[i]!))
  }
  return diff / Math.max(scale, 1e-30)
}

/** A kernel bound to its buffers whose workgroups each take `rowsPerGroup` rows. */
export class BoundRowGroups {
  constructor(private readonly d: BoundDispatch, private readonly params: GPUBuffer | undefined, private readonly rowsPerGroup: number) {}
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil(rows / this.rowsPerGroup))
    dispatch(pass, this.d, x, y)
  }
  destroy(): void {
    this.params?.destroy()
  }
}
