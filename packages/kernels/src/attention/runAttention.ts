/**
 * Upload, run, read back: one attention call from CPU arrays, for tests, the
 * attention oracle and benchmarks. Pools come in the one-shard layout, as f32
 * values, and are re-laid in the kernels' shards and stored in their kvDtype
 * (f16: rounded to nearest even, see kvStorage.ts). Outputs are filled with NaN first, so an
 * element the kernels never wrote shows up as NaN.
 */
import type { LevelPlan } from "@canopy/tree-cache"
import { readFloat32, uploadBuffer } from "../gpu/resources.ts"
import { kvPoolData } from "./kvStorage.ts"
import { shardPool } from "./poolLayout.ts"
import type { PooledInputs } from "./reference.ts"
import type { AttentionKernels } from "./treeAttention.ts"

export interface AttentionResult {
  /** `[rows][heads][headDim]` */
  readonly out: Float32Array
  /** `[rows][heads]`, natural log */
  readonly lse: Float32Array
}

export const runTreeAttention = async (
  device: GPUDevice,
  attention: AttentionKernels,
  plan: LevelPlan,
  inputs: PooledInputs
): Promise<AttentionResult> => {
  const { heads, headDim } = attention.config
  const rows = plan.numSequences
  const outCount = rows * heads * headDim
  const lseCount = rows * heads
  const created: Array<{ destroy(): void }> = []
  const own = <T extends { destroy(): void }>(x: T): T => {
    created.push(x)
    return x
  }
  try {
    const q = own(uploadBuffer(device, "q", inputs.q))
    const { kvHeads, poolShards = 1, kvDtype = "f32" } = attention.config
    const pool = (values: Float32Array) => kvPoolData(shardPool(values, kvHeads, headDim, poolShards, kvDtype), kvDtype)
    const kPool = own(uploadBuffer(device, "k pool", pool(inputs.kPool)))
    const vPool = own(uploadBuffer(device, "v pool", pool(inputs.vPool)))
    const out = own(uploadBuffer(device, "out", new Float32Array(Math.max(outCount, 1)).fill(NaN)))
    const lse = own(uploadBuffer(device, "lse", new Float32Array(Math.max(lseCount, 1)).fill(NaN)))
    const prepared = own(attention.prepare(plan))
    const encoder = device.createCommandEncoder()
    attention.encode(encoder, prepared, { q, kPool, vPool, out, lse })
    device.queue.submit([encoder.finish()])
    if (rows === 0) return { out: new Float32Array(0), lse: new Float32Array(0) }
    return { out: await readFloat32(device, out, outCount), lse: await readFloat32(device, lse, lseCount) }
  } finally {
    for (const x of created.reverse()) x.destroy()
  }
}
