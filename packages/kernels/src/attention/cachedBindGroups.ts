/**
 * Bind groups made once and kept while the buffers they bind stay the same
 * objects: the attention's plan buffers are rewritten in place every step and
 * replaced only when a plan outgrows them, so a steady decoding step finds
 * every group it needs already made.
 */
import type { GpuWorkCounters } from "../gpu/workCounters.ts"

/** One buffer of a bind group: whole, or `size` bytes from `offset`. */
export type Binding = readonly [GPUBuffer, number?, number?]

export const bindGroup = (device: GPUDevice, pipeline: GPUComputePipeline, bindings: ReadonlyArray<Binding>): GPUBindGroup =>
  device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bindings.map(([buffer, size, offset], binding) => ({
      binding,
      resource: { buffer, ...(size === undefined ? {} : { size }), ...(offset === undefined ? {} : { offset }) }
    }))
  })

const sameBuffers = (a: ReadonlyArray<GPUBuffer>, b: ReadonlyArray<GPUBuffer>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** A set of bind groups (one per pool shard, say) over the same buffers, remade when one of them, or `size`, changes. */
export class CachedBindGroups {
  private buffers: ReadonlyArray<GPUBuffer> = []
  private size = -1
  private groups: ReadonlyArray<GPUBindGroup> = []

  constructor(private readonly counters: GpuWorkCounters) {}

  /** The groups over `buffers` (and a binding size `size`, where one depends on the plan), made by `make` when they are not cached. */
  get(buffers: ReadonlyArray<GPUBuffer>, size: number, make: () => ReadonlyArray<GPUBindGroup>): ReadonlyArray<GPUBindGroup> {
    if (this.size !== size || !sameBuffers(this.buffers, buffers)) {
      this.groups = make()
      this.counters.bindGroups += this.groups.length
      // a copy: callers refill one array for every lookup
      this.buffers = [...buffers]
      this.size = size
    }
    return this.groups
  }
}
