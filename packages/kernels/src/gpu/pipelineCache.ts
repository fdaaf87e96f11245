/**
 * Compiled model-kernel pipelines, kept per device and (kernel label, WGSL):
 * every Forward on a device (every engine, every model of the same shape)
 * builds the same kernels, and compiling is slow (seconds on a software
 * adapter). A pipeline holds no data and WebGPU cannot destroy one, so sharing
 * is safe: a kernel's destroy() frees only its own buffers. The cache is weak
 * in the device, so a closed device takes its pipelines with it and a new
 * device compiles its own. Unlike the attention cache this one does not queue
 * compiles: the model kernels compile concurrently (Promise.all), as they did
 * uncached, which Dawn runs in parallel.
 */
import { createComputePipeline } from "./resources.ts"

const caches = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>()

export const sharedComputePipeline = (device: GPUDevice, kernel: string, code: string): Promise<GPUComputePipeline> => {
  let cache = caches.get(device)
  if (cache === undefined) {
    cache = new Map()
    caches.set(device, cache)
  }
  const key = `${kernel}\n${code}`
  let pipeline = cache.get(key)
  if (pipeline === undefined) {
    const c = cache
    const compiling = createComputePipeline(device, kernel, code)
    // a failed compile is not kept: the caller sees the error, a retry compiles again
    compiling.catch(() => {
      if (c.get(key) === compiling) c.delete(key)
    })
    c.set(key, compiling)
    pipeline = compiling
  }
  return pipeline
}
