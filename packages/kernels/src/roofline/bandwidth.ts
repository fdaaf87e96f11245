/**
 * Measured memory bandwidth of the current adapter: a vec4 copy kernel over a
 * buffer large enough to defeat caches, timed with `timeGpu`.
 */
import { bindBuffers, createComputePipeline, createStorageBuffer, maxStorageBytes } from "../gpu/resources.ts"
import { timeGpu, type GpuTiming } from "../gpu/timing.ts"
import { copyWgsl } from "./copy.wgsl.ts"

export interface BandwidthFigure {
  /** bytes read + written by one copy */
  readonly bytes: number
  readonly ms: number
  /** bytes read + written per second, in GB/s (1e9) */
  readonly gbPerSecond: number
  readonly timing: GpuTiming["source"]
}

export const measureBandwidth = async (device: GPUDevice, bytes: number): Promise<BandwidthFigure> => {
  const size = Math.min(Math.floor(bytes / 16) * 16, Math.floor(maxStorageBytes(device) / 16) * 16)
  const workgroupSize = Math.min(256, device.limits.maxComputeInvocationsPerWorkgroup)
  const perThread = 4
  const vec4s = size / 16
  const groups = Math.min(device.limits.maxComputeWorkgroupsPerDimension, Math.ceil(vec4s / (workgroupSize * perThread)))
  const pipeline = await createComputePipeline(device, "roofline-copy", copyWgsl(workgroupSize, Math.ceil(vec4s / (groups * workgroupSize))))
  const src = createStorageBuffer(device, "roofline-src", size)
  const dst = createStorageBuffer(device, "roofline-dst", size)
  try {
    const bind = bindBuffers(device, pipeline, [src, dst])
    const timing = await timeGpu(device, (encoder) => {
      const pass = encoder.beginComputePass()
      pass.setPipeline(pipeline)
      pass.setBindGroup(0, bind)
      pass.dispatchWorkgroups(groups)
      pass.end()
    })
    return { bytes: 2 * size, ms: timing.medianMs, gbPerSecond: (2 * size) / (timing.medianMs * 1e6), timing: timing.source }
  } finally {
    src.destroy()
    dst.destroy()
  }
}
