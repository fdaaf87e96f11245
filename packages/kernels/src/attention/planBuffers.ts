/**
 * GPU buffers that live as long as an attention object and hold each plan in
 * turn: written in place with queue.writeBuffer, and replaced by a larger one
 * (growing by half again, at least) only when a plan does not fit. A bind
 * group holds the buffer object it was made with, so comparing buffers tells
 * whether it is still valid.
 */
import { createStorageBuffer, maxStorageBytes } from "../gpu/resources.ts"
import type { GpuWorkCounters } from "../gpu/workCounters.ts"

export class GrowingBuffer {
  private current: GPUBuffer

  constructor(
    private readonly device: GPUDevice,
    private readonly label: string,
    private readonly counters: GpuWorkCounters
  ) {
    this.current = this.create(16)
  }

  get buffer(): GPUBuffer {
    return this.current
  }

  /**
   * Room for `bytes`. Replacing destroys the old buffer: work already
   * submitted keeps it until it completes, work encoded and not yet submitted
   * would fail, so submit before preparing a larger plan.
   */
  reserve(bytes: number): void {
    if (bytes <= this.current.size) return
    // growth stops at the binding limit; only a plan that needs more is refused (GpuBufferTooLarge)
    const grown = Math.min(Math.ceil(this.current.size * 1.5), maxStorageBytes(this.device))
    const replacement = this.create(Math.max(bytes, grown))
    this.current.destroy()
    this.current = replacement
  }

  /** Writes `data` at offset 0, growing first if needed. */
  write(data: Uint32Array): void {
    this.reserve(data.byteLength)
    if (data.byteLength === 0) return
    this.device.queue.writeBuffer(this.current, 0, data.buffer, data.byteOffset, data.byteLength)
    this.counters.bytesWritten += data.byteLength
  }

  destroy(): void {
    this.current.destroy()
  }

  private create(bytes: number): GPUBuffer {
    this.counters.buffers++
    return createStorageBuffer(this.device, this.label, bytes)
  }
}
