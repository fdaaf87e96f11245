/**
 * What an object asks of the GPU from the CPU, counted as it asks: the step's
 * host work in figures (dispatches, bind groups and buffers created, bytes
 * written by queue.writeBuffer). The counts only grow; a step's share is the
 * difference between two snapshots.
 *
 * Objects count for themselves (a few increments, nothing on the step's path
 * in between); `countingDevice` counts the same things at the device, for any
 * code, to check their figures against.
 */
import { adapterOf, capabilitiesOf, rememberAdapter } from "./adapters.ts"

export interface GpuWorkCounts {
  readonly dispatches: number
  readonly bindGroups: number
  readonly buffers: number
  readonly bytesWritten: number
}

export class GpuWorkCounters implements GpuWorkCounts {
  dispatches = 0
  bindGroups = 0
  buffers = 0
  bytesWritten = 0

  snapshot(): GpuWorkCounts {
    return { dispatches: this.dispatches, bindGroups: this.bindGroups, buffers: this.buffers, bytesWritten: this.bytesWritten }
  }
}

/** `a − b`, field by field. */
export const countsSince = (a: GpuWorkCounts, b: GpuWorkCounts): GpuWorkCounts => ({
  dispatches: a.dispatches - b.dispatches,
  bindGroups: a.bindGroups - b.bindGroups,
  buffers: a.buffers - b.buffers,
  bytesWritten: a.bytesWritten - b.bytesWritten
})

/** The sum of several objects' counts (a step's forward and attention). */
export const sumCounts = (counts: ReadonlyArray<GpuWorkCounts>): GpuWorkCounts =>
  counts.reduce(
    (sum, c) => ({
      dispatches: sum.dispatches + c.dispatches,
      bindGroups: sum.bindGroups + c.bindGroups,
      buffers: sum.buffers + c.buffers,
      bytesWritten: sum.bytesWritten + c.bytesWritten
    }),
    { dispatches: 0, bindGroups: 0, buffers: 0, bytesWritten: 0 }
  )

/** Bound methods of `target`, made once per member: the proxies below forward every member they do not count. */
const forwarding = <T extends object>(target: T, counted: Readonly<Record<PropertyKey, unknown>>): T => {
  const bound = new Map<PropertyKey, unknown>()
  return new Proxy(target, {
    get(t, key) {
      if (Object.hasOwn(counted, key)) return counted[key as keyof typeof counted]
      const value: unknown = Reflect.get(t, key, t)
      if (typeof value !== "function") return value
      let method = bound.get(key)
      if (method === undefined) bound.set(key, (method = value.bind(t)))
      return method
    }
  })
}

/**
 * A compute pass that counts its dispatches, for code that records through
 * kernels it does not own. Only dispatchWorkgroups is intercepted; every other
 * member is the pass's own, bound once per pass.
 */
export const countingPass = (pass: GPUComputePassEncoder, counters: GpuWorkCounters): GPUComputePassEncoder =>
  forwarding(pass, {
    dispatchWorkgroups: (x: number, y?: number, z?: number): void => {
      counters.dispatches++
      pass.dispatchWorkgroups(x, y, z)
    }
  })

/** Bytes a queue.writeBuffer call copies (its size counts elements of a typed array, bytes of an ArrayBuffer). */
const writtenBytes = (data: GPUAllowSharedBufferSource, dataOffset = 0, size?: number): number => {
  const element = ArrayBuffer.isView(data) && !(data instanceof DataView) ? (data as Uint8Array).BYTES_PER_ELEMENT : 1
  const length = ArrayBuffer.isView(data) ? data.byteLength / element : data.byteLength
  return (size ?? length - dataOffset) * element
}

/**
 * `device`, counting into `counters` every bind group and buffer created
 * through it, every byte its queue's writeBuffer copies, and every dispatch
 * recorded through its command encoders. Objects made through it are the
 * device's own; kernels choose their variants as for `device`.
 */
export const countingDevice = (device: GPUDevice, counters: GpuWorkCounters): GPUDevice => {
  const queue = forwarding(device.queue, {
    writeBuffer: (buffer: GPUBuffer, offset: number, data: GPUAllowSharedBufferSource, dataOffset?: number, size?: number): void => {
      counters.bytesWritten += writtenBytes(data, dataOffset, size)
      device.queue.writeBuffer(buffer, offset, data, dataOffset, size)
    }
  })
  const counted = forwarding(device, {
    queue,
    createBindGroup: (descriptor: GPUBindGroupDescriptor): GPUBindGroup => {
      counters.bindGroups++
      return device.createBindGroup(descriptor)
    },
    createBuffer: (descriptor: GPUBufferDescriptor): GPUBuffer => {
      counters.buffers++
      return device.createBuffer(descriptor)
    },
    createCommandEncoder: (descriptor?: GPUCommandEncoderDescriptor): GPUCommandEncoder => {
      const encoder = device.createCommandEncoder(descriptor)
      return forwarding(encoder, {
        beginComputePass: (d?: GPUComputePassDescriptor) => countingPass(encoder.beginComputePass(d), counters)
      })
    }
  })
  const adapter = adapterOf(device)
  if (adapter !== undefined) rememberAdapter(counted, adapter, capabilitiesOf(device))
  return counted
}
