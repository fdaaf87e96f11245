/**
 * Embedding gather: x[r][j] = E[token[r]][j], for r < rows, j < hidden.
 * An index at or past the table's row count yields a zero row instead of an
 * out-of-bounds read. The same kernel gathers hidden rows by row index (the
 * rows that need logits), since that is the same operation on another table.
 * The table is f32, f16 or bf16 (see weightType.ts), widened to f32 exactly.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import { capabilitiesOf, type GpuCapabilities } from "../gpu/adapters.ts"
import { type WeightStorage, type WeightType, weightArrayWgsl, weightEnableWgsl, weightStorageFor } from "./weightType.ts"
import { bindAll, dispatch, packParams, type BoundDispatch } from "./common.ts"

const WG = 64

const codeFor = (table: WeightStorage): string => wgsl`${weightEnableWgsl(table)}
struct Params { hidden: u32, tableRows: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> index: array<u32>;
${weightArrayWgsl(table, 3, "table", "loadTable", false)}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(num_workgroups) groups: vec3u) {
  let r = wg.y;
  if (r >= count.x) { return; }
  let t = index[r];
  for (var j = wg.x * ${WG}u + lid.x; j < params.hidden; j += groups.x * ${WG}u) {
    var value = 0.0;
    if (t < params.tableRows) { value = loadTable(t * params.hidden + j); }
    out[r * params.hidden + j] = value;
  }
}
`

export interface GatherBinding {
  /** u32 [rows] row indices into the table */
  readonly index: GPUBuffer
  /** [tableRows][hidden], of the kernel's table type */
  readonly table: GPUBuffer
  /** f32 [rows][hidden] */
  readonly out: GPUBuffer
  /** uniform u32 rows (see RowCount) */
  readonly count: GPUBuffer
  readonly hidden: number
  readonly tableRows: number
}

export class GatherRowsKernel {
  private constructor(
    readonly device: GPUDevice,
    /** how the kernel reads the table (from its type and the device's capabilities) */
    readonly tableStorage: WeightStorage,
    readonly pipeline: GPUComputePipeline
  ) {}

  static async create(
    device: GPUDevice,
    /** how the table is held (an embedding may be f16 or bf16; hidden rows are f32) */
    table: WeightType = "f32",
    /** what the device can do (default: its own record); f16 is read natively where shaderF16 is true */
    capabilities: GpuCapabilities = capabilitiesOf(device)
  ): Promise<GatherRowsKernel> {
    const storage = weightStorageFor(table, capabilities)
    return new GatherRowsKernel(device, storage, await sharedComputePipeline(device, `embedding-gather-${storage}`, codeFor(storage)))
  }

  bind(b: GatherBinding): BoundGather {
    const params = uniformBuffer(this.device, "gather-params", packParams([["u32", b.hidden], ["u32", b.tableRows]]))
    const bindGroup = bindAll(this.device, this.pipeline, "gather", [params, b.count, b.index, b.table, b.out])
    return new BoundGather({ pipeline: this.pipeline, bindGroup }, params, b.hidden)
  }
}

export class BoundGather {
  constructor(private readonly d: BoundDispatch, private readonly params: GPUBuffer, private readonly hidden: number) {}
  /** Each workgroup covers 16 strides of 64 columns; rows go on y. */
  encode(pass: GPUComputePassEncoder, rows: number): void {
    if (rows === 0) return
    dispatch(pass, this.d, Math.ceil(this.hidden / (WG * 16)), rows)
  }
  destroy(): void {
    this.params.destroy()
  }
}

export const referenceGather = (table: ArrayLike<number>, hidden: number, index: ArrayLike<number>): Float64Array => {
  const tableRows = table.length / hidden
  const out = new Float64Array(index.length * hidden)
  for (let r = 0; r < index.length; r++) {
    const t = index[r]!
    if (t >= tableRows) continue
    for (let j = 0; j < hidden; j++) out[r * hidden + j] = table[t * hidden + j]!
  }
  return out
}
