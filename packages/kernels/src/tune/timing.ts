/**
 * One timed submission of GPU work. With `timestamp-query` the device stamps
 * the start and the end itself (two empty compute passes bracket the work, so
 * any number of passes inside is measured); without it, or where a driver
 * returns stamps that cannot be right (zeros, wrapped, longer than the wall
 * clock allows), the figure is the wall-clock time from submit to
 * `onSubmittedWorkDone`, and says so.
 */

export type TimingSource = "timestamp-query" | "wall-clock"

export interface GpuMeasurement {
  readonly ms: number
  readonly source: TimingSource
}

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface Stamps {
  readonly querySet: GPUQuerySet
  readonly resolve: GPUBuffer
  readonly readback: GPUBuffer
}

/** Keeps its query set and buffers between measurements; destroy it when done. */
export class GpuTimer {
  /** submissions measured so far */
  measurements = 0

  private constructor(
    private readonly device: GPUDevice,
    private readonly stamps: Stamps | undefined
  ) {}

  static create(device: GPUDevice): GpuTimer {
    if (!device.features.has("timestamp-query")) return new GpuTimer(device, undefined)
    return new GpuTimer(device, {
      querySet: device.createQuerySet({ type: "timestamp", count: 2 }),
      resolve: device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      readback: device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ })
    })
  }

  /** What this device's measurements are taken with, unless a driver's stamps are refused. */
  get source(): TimingSource {
    return this.stamps === undefined ? "wall-clock" : "timestamp-query"
  }

  /** Records `encode` into one command buffer, submits it and waits for it. */
  async measure(encode: (encoder: GPUCommandEncoder) => void): Promise<GpuMeasurement> {
    const { device, stamps } = this
    const encoder = device.createCommandEncoder({ label: "timed work" })
    if (stamps) encoder.beginComputePass({ timestampWrites: { querySet: stamps.querySet, endOfPassWriteIndex: 0 } }).end()
    encode(encoder)
    if (stamps) {
      encoder.beginComputePass({ timestampWrites: { querySet: stamps.querySet, beginningOfPassWriteIndex: 1 } }).end()
      encoder.resolveQuerySet(stamps.querySet, 0, 2, stamps.resolve, 0)
      encoder.copyBufferToBuffer(stamps.resolve, 0, stamps.readback, 0, 16)
    }
    const t0 = performance.now()
    device.queue.submit([encoder.finish()])
    await device.queue.onSubmittedWorkDone()
    const wall = performance.now() - t0
    this.measurements++
    if (!stamps) return { ms: wall, source: "wall-clock" }
    await stamps.readback.mapAsync(GPUMapMode.READ)
    const [begin, end] = new BigUint64Array(stamps.readback.getMappedRange().slice(0))
    stamps.readback.unmap()
    const ns = Number(end! - begin!)
    return ns > 0 && ns < wall * 1e6 * 4 ? { ms: ns / 1e6, source: "timestamp-query" } : { ms: wall, source: "wall-clock" }
  }

  destroy(): void {
    this.stamps?.querySet.destroy()
    this.stamps?.resolve.destroy()
    this.stamps?.readback.destroy()
  }
}
