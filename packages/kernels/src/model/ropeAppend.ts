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
import { checkKvPool, kvHeadDimProblem, type KvDtype } from "../attention/kvStorage.ts"
import { poolElement, poolStoresWgsl, ROPE_PARAMS_WGSL, ROPE_TURNS_WGSL } from "./ropeAppend.wgsl.ts"
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { createStorageBuffer, uniformBuffer, wgsl } from "../gpu/resources.ts"
import { dispatch, grid2, MAX_GRID, packParams, type BoundDispatch } from "./common.ts"
import { ropeFrequencies, type RopeSpec, ropeTurnTable } from "./rope.ts"

const WG = 64

const code = (dtype: KvDtype): string => wgsl`${ROPE_PARAMS_WGSL}
@group(0) @binding(0) var<uniform> rope: RopeParams;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> slots: array<vec2u>;
@group(0) @binding(4) var<storage, read> turnTable: array<vec4f>;
@group(0) @binding(5) var<storage, read> qkv: array<f32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> kPool: array<${poolElement(dtype)}>;
@group(0) @binding(8) var<storage, read_write> vPool: array<${poolElement(dtype)}>;
${poolStoresWgsl(dtype)}
${ROPE_TURNS_WGSL}

// Element e of the head whose first element is qkv[src], rotated to position p.
fn rotated(src: u32, e: u32, p: u32) -> f32 {
  let half = rope.headDim / 2u;
  let i = e % half;
  let pair = rotatePair(qkv[src + i], qkv[src + i + half], turnsAt(p, i));
  return select(pair.y, pair.x, e < half);
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  // units of two elements: this shard's q heads, then its k heads, then its v heads
  let headUnits = rope.headDim / 2u;
  let group = rope.heads / rope.kvHeads;
  let qUnits = group * rope.shardHeads * headUnits;
  let kvUnits = rope.shardHeads * headUnits;
  let perRow = qUnits + 2u * kvUnits;
  let r = id / perRow;
  if (r >= count.x) { return; }
  var u = id % perRow;
  let p = positions[r];
  let row = r * (rope.heads + 2u * rope.kvHeads) * rope.headDim;
  // each part is whole heads, so the unit's first element is the same counted from any part's start
  let e = 2u * (u % headUnits);
  if (u < qUnits) {
    let head = rope.firstHead * group + u / headUnits;
    let src = row + head * rope.headDim;
    let at = (r * rope.heads + head) * rope.headDim + e;
    q[at] = rotated(src, e, p);
    q[at + 1u] = rotated(src, e + 1u, p);
    return;
  }
  let dst = slots[r];
  if (dst.x >= rope.numBlocks || dst.y >= rope.blockSize) { return; }
  u -= qUnits;
  let isV = u >= kvUnits;
  let local = (u % kvUnits) / headUnits;
  let head = rope.firstHead + local;
  // the element's index in this shard's window of the pool
  let cell = ((dst.x * rope.blockSize + dst.y) * rope.shardHeads + local) * rope.headDim + e;
  if (isV) {
    let src = row + (rope.heads + rope.kvHeads + head) * rope.headDim + e;
    store_vPool(cell, qkv[src], qkv[src + 1u]);
  } else {
    let src = row + (rope.heads + head) * rope.headDim;
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

/**
 * RoPE and the KV append as the q/k/v projection's epilogue does them
 * (RopeAppendKernel.epilogue): the matmul's y is then q, f32
 * [rows][heads][headDim], and its outDim the qkv row's width.
 */
export interface RopeAppendOutput {
  readonly kind: "rope-append"
  readonly kvDtype: KvDtype
  /** the kernel's parameter block and turn table */
  readonly params: GPUBuffer
  readonly turnTable: GPUBuffer
  readonly positions: GPUBuffer
  readonly slots: GPUBuffer
  readonly kPool: GPUBuffer
  readonly vPool: GPUBuffer
  /** (heads + 2·kvHeads)·headDim: the projection's outDim */
  readonly qkvDim: number
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

/** Why a q/k/v projection cannot do RoPE and the KV append of `shape` in its epilogue (RopeAppendKernel.epilogueProblem), or undefined. */
export const ropeEpilogueProblem = (shape: RopeAppendShape): string | undefined => {
  if ((shape.poolShards ?? 1) !== 1) return `the pools are in ${shape.poolShards} shards (the epilogue binds one)`
  if (shape.spec.headDim % 4 !== 0) return `headDim (${shape.spec.headDim}) is not a multiple of 4`
  return undefined
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
    private readonly perRow: number,
    readonly shape: RopeAppendShape
  ) {}

  /**
   * Why a q/k/v projection cannot do this kernel's work in its epilogue (the
   * matmul's "rope-append" output), or undefined: it stores a head's
   * elements four at a time (two rotated pairs), and binds one pool window.
   */
  get epilogueProblem(): string | undefined {
    return ropeEpilogueProblem(this.shape)
  }

  /** This kernel's work as a q/k/v projection's epilogue writes it, for one layer's pools; throws InvalidRopeAppend where epilogueProblem says why not. */
  epilogue(b: Omit<RopeAppendBinding, "qkv" | "q" | "count">): RopeAppendOutput {
    const problem = this.epilogueProblem
    if (problem !== undefined) throw new InvalidRopeAppend({ problem: `no epilogue: ${problem}` })
    checkKvPool(b.kPool, this.kvDtype, "rope-append")
    checkKvPool(b.vPool, this.kvDtype, "rope-append")
    const { heads, kvHeads, spec } = this.shape
    return {
      kind: "rope-append", kvDtype: this.kvDtype, params: this.shardParams[0]!, turnTable: this.turnTable,
      positions: b.positions, slots: b.slots, kPool: b.kPool, vPool: b.vPool, qkvDim: (heads + 2 * kvHeads) * spec.headDim
    }
  }

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
    return new RopeAppendKernel(device, kvDtype, pipeline, shardParams, turnTable, perRow, shape)
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
