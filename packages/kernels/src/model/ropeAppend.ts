/**
 * RoPE fused with the KV append, on the rows of the fused q/k/v projection
 * qkv [rows][(heads + 2·kvHeads)·d] (each row: its q heads, then k heads, then v heads),
 * positions p_r and destinations (block b_r, slot s_r):
 *
 *   q[r][h]                = rope(qkv q head h of row r, p_r)          (the attention's input, f32)
 *   kPool[b_r][s_r][h]     = round(rope(qkv k head h of row r, p_r))
 *   vPool[b_r][s_r][h]     = round(qkv v head h of row r)
 *
 * rope is Llama's "rotate_half", pairing (i, i + d/2):
 *   θ_i = p · f_i                      (f_i = inverse frequency of pair i, after scaling; see rope.ts)
 *   x'[i]       = (x[i]·cos θ_i − x[i+d/2]·sin θ_i) · m
 *   x'[i + d/2] = (x[i+d/2]·cos θ_i + x[i]·sin θ_i) · m      (m = attention factor, 1 except yarn)
 * round is the identity for f32 pools and round to nearest even for f16 pools
 * (f16Bits in kvStorage.ts, two elements to a u32 word), as in kv-append.ts.
 * A row whose block is ≥ numBlocks or slot ≥ blockSize (the engine's NO_WRITE)
 * writes no K or V, but its q is rotated all the same. A pool in S shards
 * (see TreeAttentionConfig.poolShards) takes one dispatch per shard, each
 * bound to its shard's window and covering its KV heads and the query heads
 * that attend them.
 *
 * One invocation per two consecutive elements of one head (one word of an f16
 * pool), each element rotated on its own, so both pool types share the work
 * split. Angles reach 10⁵ radians, where an f32 product p·f_i is off by more
 * than the 1e-4 budget and WGSL's sin/cos are only specified on [−π, π]: the
 * angle is taken in turns, t_i = f_i / 2π, split on the host into parts whose
 * products with the 12-bit halves of p are exact in f32 (ropeTurnTable); the
 * fractional turns are reduced to an octant and sin/cos evaluated by
 * polynomials (error < 1e-8). Dynamic NTK scaling depends on the position
 * itself (its base grows once p + 1 exceeds the original context), so those
 * rows compute f_i in f32 in the kernel, at sequence length p + 1, so a
 * token's rotation never depends on what it is batched with.
 */
import { Data } from "effect"
import { checkKvPool, F16_BITS_WGSL, kvHeadDimProblem, type KvDtype } from "../attention/kvStorage.ts"
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { createStorageBuffer, uniformBuffer, wgsl } from "../gpu/resources.ts"
import { dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"
import { ropeFrequencies, type RopeSpec, ropeTurnTable } from "./rope.ts"

const WG = 64

/** Stores two consecutive pool elements at element `cell` (even): two f32, or one word of two f16. */
const storeWgsl = (pool: string, dtype: KvDtype): string =>
  dtype === "f32"
    ? `fn store_${pool}(cell: u32, a: f32, b: f32) { ${pool}[cell] = a; ${pool}[cell + 1u] = b; }`
    : `fn store_${pool}(cell: u32, a: f32, b: f32) { ${pool}[cell / 2u] = f16Bits(a) | (f16Bits(b) << 16u); }`

const code = (dtype: KvDtype): string => wgsl`
struct Params {
  heads: u32, kvHeads: u32, headDim: u32, dynamic: u32,
  theta: f32, factor: f32, original: f32, attentionFactor: f32,
  // the pools' blocks; this dispatch's shard: its KV heads and its first one
  blockSize: u32, numBlocks: u32, shardHeads: u32, firstHead: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> slots: array<vec2u>;
@group(0) @binding(4) var<storage, read> turnTable: array<vec4f>;
@group(0) @binding(5) var<storage, read> qkv: array<f32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> kPool: array<${dtype === "f32" ? "f32" : "u32"}>;
@group(0) @binding(8) var<storage, read_write> vPool: array<${dtype === "f32" ? "f32" : "u32"}>;
${dtype === "f16" ? F16_BITS_WGSL : ""}
${storeWgsl("kPool", dtype)}
${storeWgsl("vPool", dtype)}

const TAU: f32 = 6.283185307179586;

// (sin, cos) of 2π·turns for turns ≥ 0: octant reduction, then Taylor series on [−π/4, π/4].
fn sinCosTurns(turns: f32) -> vec2f {
  let quarter = round(turns * 4.0);
  let x = (turns - quarter * 0.25) * TAU;
  let x2 = x * x;
  let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
  let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
  switch (u32(quarter) & 3u) {
    case 0u: { return vec2f(s, c); }
    case 1u: { return vec2f(c, -s); }
    case 2u: { return vec2f(-s, -c); }
    default: { return vec2f(-c, s); }
  }
}

// The fractional turns of pair i at position p.
fn turnsAt(p: u32, i: u32) -> f32 {
  if (params.dynamic != 0u && f32(p + 1u) > params.original) {
    let len = f32(p + 1u);
    let d = f32(params.headDim);
    let base = params.theta * pow(params.factor * len / params.original - (params.factor - 1.0), d / (d - 2.0));
    let t = exp2(-f32(2u * i) / d * log2(base)) / TAU;
    return fract(f32(p >> 12u) * fract(4096.0 * t)) + fract(f32(p & 4095u) * t);
  }
  let e = turnTable[i];
  let hi = f32(p >> 12u);
  let lo = f32(p & 4095u);
  return fract(fract(hi * e.x) + hi * e.y + fract(lo * e.z) + lo * e.w);
}

// Element e of the head whose first element is qkv[src], rotated to position p.
fn rotated(src: u32, e: u32, p: u32) -> f32 {
  let half = params.headDim / 2u;
  let sc = sinCosTurns(turnsAt(p, e % half)) * params.attentionFactor;
  if (e < half) { return qkv[src + e] * sc.y - qkv[src + e + half] * sc.x; }
  return qkv[src + e] * sc.y + qkv[src + e - half] * sc.x;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  // units of two elements: this shard's q heads, then its k heads, then its v heads
  let headUnits = params.headDim / 2u;
  let group = params.heads / params.kvHeads;
  let qUnits = group * params.shardHeads * headUnits;
  let kvUnits = params.shardHeads * headUnits;
  let perRow = qUnits + 2u * kvUnits;
  let r = id / perRow;
  if (r >= count.x) { return; }
  var u = id % perRow;
  let p = positions[r];
  let row = r * (params.heads + 2u * params.kvHeads) * params.headDim;
  // each part is whole heads, so the unit's first element is the same counted from any part's start
  let e = 2u * (u % headUnits);
  if (u < qUnits) {
    let head = params.firstHead * group + u / headUnits;
    let src = row + head * params.headDim;
    let at = (r * params.heads + head) * params.headDim + e;
    q[at] = rotated(src, e, p);
    q[at + 1u] = rotated(src, e + 1u, p);
    return;
  }
  let dst = slots[r];
  if (dst.x >= params.numBlocks || dst.y >= params.blockSize) { return; }
  u -= qUnits;
  let isV = u >= kvUnits;
  let local = (u % kvUnits) / headUnits;
  let head = params.firstHead + local;
  // the element's index in this shard's window of the pool
  let cell = ((dst.x * params.blockSize + dst.y) * params.shardHeads + local) * params.headDim + e;
  if (isV) {
    let src = row + (params.heads + params.kvHeads + head) * params.headDim + e;
    store_vPool(cell, qkv[src], qkv[src + 1u]);
  } else {
    let src = row + (params.heads + head) * params.headDim;
    store_kPool(cell, rotated(src, e, p), rotated(src, e + 1u, p));
  }
}
`

/** The model and pool shape a kernel is made for; every layer's binding shares its parameters. */
export interface RopeAppendShape {
  readonly heads: number
  readonly kvHeads: number
  /** the rotation; its headDim is the heads' */
  readonly spec: RopeSpec
  readonly blockSize: number
  readonly numBlocks: number
  /** shards of each pool buffer (default 1; divides kvHeads): shard s at byte offset s·size/S */
  readonly poolShards?: number
}

export interface RopeAppendBinding {
  /** u32 [rows] */
  readonly positions: GPUBuffer
  /** u32 pairs [rows][2]: (block, slot) */
  readonly slots: GPUBuffer
  /** f32 [rows][(heads + 2·kvHeads)·headDim], q then k then v heads */
  readonly qkv: GPUBuffer
  /** f32 [rows][heads][headDim], written */
  readonly q: GPUBuffer
  /** [numBlocks][blockSize][kvHeads][headDim] of the kernel's dtype, in shards */
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  readonly count: GPUBuffer
}

/** A shape the kernel cannot run, found before anything is built. */
export class InvalidRopeAppend extends Data.TaggedError("InvalidRopeAppend")<{
  readonly problem: string
}> {
  override get message(): string {
    return `rope-append: ${this.problem}`
  }
}

const positiveInteger = (n: number): boolean => Number.isInteger(n) && n >= 1

const shapeProblems = (s: RopeAppendShape, kvDtype: KvDtype): ReadonlyArray<string> => {
  const d = s.spec.headDim
  const shards = s.poolShards ?? 1
  const problems: Array<string> = []
  if (!(positiveInteger(s.kvHeads) && positiveInteger(s.heads) && s.heads % s.kvHeads === 0)) {
    problems.push(`heads (${s.heads}) must be a positive multiple of kvHeads (${s.kvHeads})`)
  }
  if (!(positiveInteger(d) && d % 2 === 0)) problems.push(`headDim (${d}) must be a positive even number (RoPE rotates pairs)`)
  const dtypeProblem = kvHeadDimProblem(kvDtype, d)
  if (dtypeProblem !== undefined) problems.push(dtypeProblem)
  if (!positiveInteger(s.blockSize)) problems.push(`blockSize (${s.blockSize}) must be a positive integer`)
  if (!positiveInteger(s.numBlocks)) problems.push(`numBlocks (${s.numBlocks}) must be a positive integer`)
  if (!(positiveInteger(shards) && s.kvHeads % shards === 0)) problems.push(`poolShards (${shards}) must divide kvHeads (${s.kvHeads})`)
  return problems
}

export class RopeAppendKernel {
  private constructor(
    readonly device: GPUDevice,
    readonly kvDtype: KvDtype,
    private readonly pipeline: GPUComputePipeline,
    /** one parameter block per pool shard */
    private readonly shardParams: ReadonlyArray<GPUBuffer>,
    private readonly turnTable: GPUBuffer,
    /** invocations per row of one shard's dispatch */
    private readonly perRow: number
  ) {}

  /** A kernel for `shape` writing pools of `kvDtype` (default "f32"); throws InvalidRopeAppend for a shape it cannot run. */
  static async create(device: GPUDevice, shape: RopeAppendShape, kvDtype: KvDtype = "f32"): Promise<RopeAppendKernel> {
    const problems = shapeProblems(shape, kvDtype)
    if (problems.length > 0) throw new InvalidRopeAppend({ problem: problems.join("; ") })
    const pipeline = await sharedComputePipeline(device, `rope-append-${kvDtype}`, code(kvDtype))
    const { spec, heads, kvHeads } = shape
    const shards = shape.poolShards ?? 1
    const shardHeads = kvHeads / shards
    const { inverse, attentionFactor } = ropeFrequencies(spec)
    const dynamic = spec.scaling.type === "dynamic" ? spec.scaling : undefined
    const shardParams = Array.from({ length: shards }, (_, s) => uniformBuffer(device, `rope-append-params-${s}`, packParams([
      ["u32", heads], ["u32", kvHeads], ["u32", spec.headDim], ["u32", dynamic ? 1 : 0],
      ["f32", spec.theta], ["f32", dynamic?.factor ?? 1], ["f32", dynamic?.originalMaxPositions ?? 0], ["f32", attentionFactor],
      ["u32", shape.blockSize], ["u32", shape.numBlocks], ["u32", shardHeads], ["u32", s * shardHeads]
    ])))
    const turns = ropeTurnTable(inverse)
    const turnTable = createStorageBuffer(device, "rope-append-turns", turns.byteLength)
    device.queue.writeBuffer(turnTable, 0, turns)
    const perRow = ((heads / kvHeads) + 2) * shardHeads * (spec.headDim / 2)
    return new RopeAppendKernel(device, kvDtype, pipeline, shardParams, turnTable, perRow)
  }

  /** Bind groups over one layer's buffers (one per pool shard); the kernel owns what they share. */
  bind(b: RopeAppendBinding): BoundRopeAppend {
    checkKvPool(b.kPool, this.kvDtype, "rope-append")
    checkKvPool(b.vPool, this.kvDtype, "rope-append")
    const shards = this.shardParams.length
    const shardBytes = b.kPool.size / shards
    const window = (buffer: GPUBuffer, s: number) => ({ buffer, offset: s * shardBytes, size: shardBytes })
    const shared = [b.count, b.positions, b.slots, this.turnTable, b.qkv, b.q]
    const dispatches = this.shardParams.map((params, s): BoundDispatch => ({
      pipeline: this.pipeline,
      bindGroup: this.device.createBindGroup({
        label: `rope-append-${s}`,
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: params } },
          ...shared.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
          { binding: 7, resource: window(b.kPool, s) },
          { binding: 8, resource: window(b.vPool, s) }
        ]
      })
    }))
    return new BoundRopeAppend(dispatches, this.perRow)
  }

  destroy(): void {
    for (const p of this.shardParams) p.destroy()
    this.turnTable.destroy()
  }
}

export class BoundRopeAppend {
  constructor(private readonly shards: ReadonlyArray<BoundDispatch>, private readonly perRow: number) {}

  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    const [x, y] = grid2(Math.ceil((rows * this.perRow) / WG))
    for (const d of this.shards) dispatch(pass, d, x, y)
  }
}
