/**
 * The attention oracle's work: parse a case, answer it with the chosen method.
 */
import {
  ATTENTION_WORKGROUP, type AttentionKernels, type GpuHandle, createPagedDecode, createTreeAttention, describeAdapter, findLevelTile,
  kvElementBytes, layoutCase, maxDecodeGroup, maxStorageBytes, openGpu, type PooledInputs, referenceTreeAttention, runTreeAttention, type TreeAttentionCase
} from "@canopy/kernels"
import type { LevelPlan } from "@canopy/tree-cache"
import { type AttentionCase, type AttentionAnswer, formatAnswer, InvalidAttentionCase, parseAttentionCase } from "./AttentionCase.ts"

/** Parses the oracle's standard input; throws InvalidAttentionCase. */
export const parseOracleInput = (text: string): AttentionCase => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new InvalidAttentionCase({ path: "$", problem: `standard input is not JSON (${e instanceof Error ? e.message : e})` })
  }
  return parseAttentionCase(json)
}

/** Kernels take a head dim that is a multiple of 8 up to 128 (their compiled tiles). */
const checkGpuShape = (c: AttentionCase): void => {
  if (c.headDim % 8 !== 0 || c.headDim > 128) {
    throw new InvalidAttentionCase({
      path: "$.headDim",
      problem: `the GPU kernels take a multiple of 8 up to 128, got ${c.headDim} (method "reference" takes any)`
    })
  }
}

/**
 * What the kernels take on this device, checked before any is built so that a
 * shape they cannot run is an input error naming the limit, not a kernel failure.
 */
const checkDeviceShape = (c: AttentionCase, limits: GPUSupportedLimits): void => {
  const group = c.heads / c.kvHeads
  const most = maxDecodeGroup(c.headDim, limits)
  const workgroup = `a workgroup of ${Math.min(ATTENTION_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup)} threads and ` +
    `${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`
  if (most === 0) {
    throw new InvalidAttentionCase({
      path: "$.headDim",
      problem: `the GPU decode kernel has no tile for head dim ${c.headDim} on this adapter (${workgroup}); method "reference" takes any`
    })
  }
  if (group > most) {
    throw new InvalidAttentionCase({
      path: "$.heads",
      problem: `${group} query heads per KV head (heads ${c.heads} / kvHeads ${c.kvHeads}) are more than the GPU decode kernel takes ` +
        `at head dim ${c.headDim} on this adapter: at most ${most} (${workgroup}); method "reference" takes any`
    })
  }
  if (c.method === "hydragen" && findLevelTile(c.headDim, limits) === undefined) {
    throw new InvalidAttentionCase({
      path: "$.headDim",
      problem: `the GPU level kernel has no tile for head dim ${c.headDim} on this adapter (${workgroup}); method "reference" takes any`
    })
  }
}

/** Every buffer the run binds must fit one storage binding of the device. */
const checkBuffers = (c: AttentionCase, plan: LevelPlan, inputs: PooledInputs, device: GPUDevice, blockSize: number): void => {
  const allowed = maxStorageBytes(device)
  const check = (path: string, what: string, bytes: number): void => {
    if (bytes > allowed) {
      throw new InvalidAttentionCase({ path, problem: `${what} take ${bytes} bytes; one GPU storage binding holds at most ${allowed} on this adapter` })
    }
  }
  const rows = c.queries.length
  check("$.queries", `the ${rows} queries (q and out: ${rows} × ${c.heads} heads × ${c.headDim} f32 each)`, inputs.q.byteLength)
  const blocks = inputs.kPool.length / (blockSize * c.kvHeads * c.headDim)
  check("$.nodes", `the K pool and the V pool (${blocks} blocks of ${blockSize} tokens each, ${c.kvDtype})`, inputs.kPool.length * kvElementBytes(c.kvDtype))
  check(
    "$.queries",
    `the partial states (${plan.numPartials}: one per query per node on its path, × ${c.heads} heads × ${c.headDim} f32)`,
    plan.numPartials * c.heads * c.headDim * 4
  )
}

/** Rows per output array: out `[heads·headDim]`, lse `[heads]`. */
const split = (flat: ArrayLike<number>, rows: number, width: number): Array<ArrayLike<number>> =>
  Array.from({ length: rows }, (_, r) => Array.prototype.slice.call(flat, r * width, (r + 1) * width) as Array<number>)

/**
 * Answers a case with its method: the GPU path (hydragen or baseline) or the
 * float64 reference. Opens (and closes) a device unless one is given.
 */
export const answerCase = async (c: AttentionCase, shared?: GpuHandle): Promise<AttentionAnswer> => {
  const tree: TreeAttentionCase = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, nodes: c.nodes, queries: c.queries }
  const rows = c.queries.length
  if (c.method === "reference") {
    const r = referenceTreeAttention(tree)
    return formatAnswer(split(r.out, rows, c.heads * c.headDim), split(r.lse, rows, c.heads), "cpu float64 reference")
  }
  checkGpuShape(c)
  const gpu = shared ?? (await openGpu())
  let kernels: AttentionKernels | undefined
  try {
    const blockSize = 16
    checkDeviceShape(c, gpu.device.limits)
    const { plan, inputs } = layoutCase(tree, blockSize)
    checkBuffers(c, plan, inputs, gpu.device, blockSize)
    const shape = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, blockSize, kvDtype: c.kvDtype }
    kernels = c.method === "baseline" ? await createPagedDecode(gpu.device, shape) : await createTreeAttention(gpu.device, shape)
    const r = await runTreeAttention(gpu.device, kernels, plan, inputs)
    return formatAnswer(split(r.out, rows, c.heads * c.headDim), split(r.lse, rows, c.heads), describeAdapter(gpu.adapter))
  } finally {
    kernels?.destroy()
    if (shared === undefined) gpu.close()
  }
}
