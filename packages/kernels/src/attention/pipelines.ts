/**
 * Compiled attention pipelines, cached per device and specialization: the
 * generated WGSL depends only on the head dim, the GQA group (decode) and the
 * tiles, and compiling is slow (seconds on a software adapter).
 */
import { createComputePipeline } from "../gpu/resources.ts"

interface DeviceCache {
  readonly pipelines: Map<string, Promise<GPUComputePipeline>>
  /** compiles run one after another: each reports errors through the device's error-scope stack */
  queue: Promise<unknown>
}

const caches = new WeakMap<GPUDevice, DeviceCache>()

export const cachedPipeline = (device: GPUDevice, kernel: string, code: string): Promise<GPUComputePipeline> => {
  let cache = caches.get(device)
  if (cache === undefined) {
    cache = { pipelines: new Map(), queue: Promise.resolve() }
    caches.set(device, cache)
  }
  const key = `${kernel}\n${code}`
  let pipeline = cache.pipelines.get(key)
  if (pipeline === undefined) {
    const c = cache
    pipeline = c.queue.then(() => createComputePipeline(device, kernel, code))
    c.queue = pipeline.catch(() => undefined)
    // a failed compile is not kept: the caller sees the error, a retry compiles again
    pipeline.catch(() => c.pipelines.delete(key))
    c.pipelines.set(key, pipeline)
  }
  return pipeline
}
