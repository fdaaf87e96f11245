/**
 * Whether the tuner may build the matrix matmul on this adapter. A driver may
 * abort the whole process while it builds a matrix-unit pipeline (NVIDIA's
 * did, through Dawn, for tiled kernels), which no error handler can catch, so
 * the engine never builds one first: the probe `engine-matmul` — the
 * engine's own kernel, built, checked against float64 and timed — runs in a
 * process of its own (`canopy probe`, the GPU entry's `subgroup-matrix`
 * part), and that process keeps the outcome in the tuning cache under the
 * adapter and the Canopy version. A crash keeps nothing, so the kernel is
 * offered only where the probe said "ok" on this adapter for this version.
 */
import type { ProbeResult } from "../subgroupMatrix/probes.ts"
import { canopyVersion, type TuneCache, type TuneKey } from "./cache.ts"
import { tuneAdapterOf } from "./tuner.ts"

/** The probe the engine's matrix kernel stands on. */
export const ENGINE_MATRIX_PROBE = "engine-matmul"

const probeKey = (device: GPUDevice, version: string): TuneKey =>
  ({ adapter: tuneAdapterOf(device), version, kernel: "subgroup-matrix-probe", shape: { probe: ENGINE_MATRIX_PROBE } })

/** Keeps the engine probe's outcome (as a tuning record: its status as the choice, its timing as the median). */
export const recordMatrixProbe = (cache: TuneCache, device: GPUDevice, result: ProbeResult, version = canopyVersion()): void => {
  if (result.probe !== ENGINE_MATRIX_PROBE) throw new RangeError(`only the ${ENGINE_MATRIX_PROBE} probe is kept, not ${result.probe}`)
  cache.set(probeKey(device, version), {
    choice: result.status,
    medianMs: result.timed === undefined ? {} : { [ENGINE_MATRIX_PROBE]: result.timed.ms },
    tunedAt: new Date().toISOString()
  })
}

/** What the engine probe said on this device's adapter for `version`, or undefined where it never ran (or crashed). */
export const matrixProbeStatus = (cache: TuneCache | undefined, device: GPUDevice, version = canopyVersion()): string | undefined =>
  cache?.get(probeKey(device, version))?.choice
