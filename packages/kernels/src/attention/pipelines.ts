/**
 * Compiled attention pipelines, cached per device and specialization: the
 * generated WGSL depends only on the shape and tiles, and compiling is slow
 * (especially on a software adapter).
 */
import { createComputePipeline } from "../gpu/resources.ts"

const cache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>()

export const cachedPipeline = (device: GPUDevice, kernel: string, code: string): Promise<GPUComputePipeline> => {
  let perDevice = cache.get(device)
  if (perDevice === undefined) {
    perDevice = new Map()
    cache.set(device, perDevice)
  }
  const key = `${kernel}\n${code}`
  let pipeline = perDevice.get(key)
  if (pipeline === undefined) {
    pipeline = createComputePipeline(device, kernel, code)
    // a failed compile is not cached: the caller sees the error, a retry compiles again
    pipeline.catch(() => perDevice.delete(key))
    perDevice.set(key, pipeline)
  }
  return pipeline
}
