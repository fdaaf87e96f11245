/**
 * The roofline of an adapter: measured copy bandwidth and f32 matmul rate. A
 * kernel that must move B bytes and do F flops cannot finish sooner than
 * max(B / bandwidth, F / rate); its measured time against that bound is the
 * fraction of the roofline it reaches.
 */
import { type BandwidthFigure, measureBandwidth } from "./bandwidth.ts"
import { type MatmulFigure, measureMatmulRate } from "./matmulRate.ts"

export interface RooflineFigures {
  readonly bandwidth: BandwidthFigure
  readonly matmul: MatmulFigure
}

export interface RooflineOptions {
  /** bytes of the copy kernel's source buffer */
  readonly copyBytes: number
  /** n of the n×n·n×n matmul */
  readonly matmulSize: number
}

export const measureRoofline = async (device: GPUDevice, options: RooflineOptions): Promise<RooflineFigures> => {
  const bandwidth = await measureBandwidth(device, options.copyBytes)
  const matmul = await measureMatmulRate(device, options.matmulSize)
  return { bandwidth, matmul }
}

/** The least time (ms) work of `bytes` and `flops` can take under the roofline. */
export const rooflineMs = (roofline: RooflineFigures, work: { readonly bytes: number; readonly flops: number }): number =>
  Math.max(work.bytes / (roofline.bandwidth.gbPerSecond * 1e6), work.flops / (roofline.matmul.gflops * 1e6))
