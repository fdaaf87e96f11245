/**
 * Measured f32 matrix-product rate of the current adapter: the model's GEMM
 * for many rows (`MatmulKernel`, the path prefill takes) on an n×n·n×n
 * problem, in the device's default variant — workgroup-memory tiles on a GPU,
 * barrier-free register tiles on a software adapter. It is the compute
 * ceiling the attention benchmarks compare against, since the level kernel
 * turns shared-prefix attention into f32 matrix products of the same kind.
 */
import { createStorageBuffer, maxStorageBytes } from "../gpu/resources.ts"
import { timeGpu, type GpuTiming } from "../gpu/timing.ts"
import { createRowCount, type KernelVariant } from "../model/common.ts"
import { FillKernel } from "../model/fill.ts"
import { GEMV_MAX_ROWS, MatmulKernel } from "../model/matmul.ts"

export interface MatmulFigure {
  /** rows = inner dimension = columns */
  readonly n: number
  readonly ms: number
  /** 2·n³ flops per second, in GFLOP/s (1e9) */
  readonly gflops: number
  readonly variant: KernelVariant
  readonly timing: GpuTiming["source"]
}

export const measureMatmulRate = async (device: GPUDevice, n: number): Promise<MatmulFigure> => {
  const bytes = n * n * 4
  // smaller problems take the GEMV path, which is bandwidth bound
  if (!Number.isInteger(n) || n <= GEMV_MAX_ROWS) throw new RangeError(`matmul size must be an integer above ${GEMV_MAX_ROWS}, got ${n}`)
  if (bytes > maxStorageBytes(device)) throw new RangeError(`matmul size ${n}: an ${n}×${n} f32 matrix exceeds the device's ${maxStorageBytes(device)}-byte storage binding`)
  const [matmul, fill] = await Promise.all([MatmulKernel.create(device), FillKernel.create(device)])
  const x = createStorageBuffer(device, "roofline-matmul-x", bytes)
  const w = createStorageBuffer(device, "roofline-matmul-w", bytes)
  const y = createStorageBuffer(device, "roofline-matmul-y", bytes)
  const rows = createRowCount(device, "roofline-matmul-rows", n)
  const bound = matmul.bind({ x, w, y, count: rows.buffer, inDim: n, outDim: n })
  try {
    // random operands: zeros could take faster paths on software adapters
    const encoder = device.createCommandEncoder()
    const params = [
      fill.encode(encoder, x, n * n, { seed: 1, tensorId: 0, scale: 1 }),
      fill.encode(encoder, w, n * n, { seed: 1, tensorId: 1, scale: 1 })
    ]
    device.queue.submit([encoder.finish()])
    await device.queue.onSubmittedWorkDone()
    for (const p of params) p.destroy()
    const timing = await timeGpu(device, (e) => {
      const pass = e.beginComputePass({ label: "roofline matmul" })
      bound.encode(pass, n)
      pass.end()
    })
    return { n, ms: timing.medianMs, gflops: (2 * n ** 3) / (timing.medianMs * 1e6), variant: matmul.variant, timing: timing.source }
  } finally {
    bound.destroy()
    rows.destroy()
    for (const b of [x, w, y]) b.destroy()
    matmul.destroy()
  }
}
