/**
 * Timing GPU work. With `timestamp-query` the device itself stamps the start
 * and end (two empty compute passes bracket the work, so any number of passes
 * inside is measured); without it, wall-clock time to `onSubmittedWorkDone`.
 * Warm-up runs first; the figure is the median of the repeats.
 */
export interface GpuTiming {
  readonly medianMs: number
  readonly minMs: number
  readonly samplesMs: ReadonlyArray<number>
  readonly source: "timestamp-query" | "wall-clock"
}

export interface TimeGpuOptions {
  readonly warmup?: number
  readonly repeats?: number
  /** stop repeating once this much time was spent measuring (ms) */
  readonly budgetMs?: number
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export const timeGpu = async (
  device: GPUDevice,
  encode: (encoder: GPUCommandEncoder) => void,
  options: TimeGpuOptions = {}
): Promise<GpuTiming> => {
  const warmup = options.warmup ?? 2
  const repeats = options.repeats ?? 7
  const budgetMs = options.budgetMs ?? 20_000
  const stamps = device.features.has("timestamp-query")
  const querySet = stamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined
  const resolve = stamps
    ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC })
    : undefined
  const readback = stamps ? device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ }) : undefined
  try {
    const once = async (): Promise<number> => {
      const encoder = device.createCommandEncoder()
      if (querySet) encoder.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 0 } }).end()
      encode(encoder)
      if (querySet) {
        encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 1 } }).end()
        encoder.resolveQuerySet(querySet, 0, 2, resolve!, 0)
        encoder.copyBufferToBuffer(resolve!, 0, readback!, 0, 16)
      }
      const t0 = performance.now()
      device.queue.submit([encoder.finish()])
      await device.queue.onSubmittedWorkDone()
      const wall = performance.now() - t0
      if (!readback) return wall
      await readback.mapAsync(GPUMapMode.READ)
      const [begin, end] = new BigUint64Array(readback.getMappedRange().slice(0))
      readback.unmap()
      const ns = Number(end! - begin!)
      // Some drivers return zeros or wrapped stamps; fall back to the wall clock then.
      return ns > 0 && ns < wall * 1e6 * 4 ? ns / 1e6 : wall
    }
    for (let i = 0; i < warmup; i++) await once()
    const samples: Array<number> = []
    const start = performance.now()
    for (let i = 0; i < repeats; i++) {
      samples.push(await once())
      if (performance.now() - start > budgetMs && samples.length >= 3) break
    }
    return {
      medianMs: median(samples),
      minMs: Math.min(...samples),
      samplesMs: samples,
      source: stamps ? "timestamp-query" : "wall-clock"
    }
  } finally {
    querySet?.destroy()
    resolve?.destroy()
    readback?.destroy()
  }
}
