/**
 * Whether the tuner may build the engine's matrix-unit kernels on this
 * adapter: the matrix matmul and the matrix level attention. A driver may
 * abort the whole process while it builds a matrix-unit pipeline (NVIDIA's
 * did, through Dawn, for tiled kernels), which no error handler can catch, so
 * the engine never builds one first: the probes `engine-matmul` and
 * `engine-level-attention` — the engine's own kernels, built, checked against
 * float64 and timed — run each in a process of its own (`canopy probe`, the
 * GPU entry's `subgroup-matrix` part), and that process keeps the outcome in
 * the tuning cache under the adapter and the Canopy version. A crash keeps
 * nothing, so a kernel is offered only where its probe said "ok" on this
 * adapter for this version.
 */
import type { ProbeResult } from "../subgroupMatrix/probes.ts"
import { canopyVersion, type TuneCache, type TuneKey } from "./cache.ts"
import { tuneAdapterOf } from "./tuner.ts"

/** The probe the engine's matrix matmul stands on. */
export const ENGINE_MATRIX_PROBE = "engine-matmul"
/** The probe the engine's matrix level attention stands on. */
export const ENGINE_LEVEL_PROBE = "engine-level-attention"
/** The head dim it builds every matrix level tile at: the largest common one (a tile that fits there fits at any smaller one). */
export const ENGINE_LEVEL_PROBE_HEAD_DIM = 128

export type EngineProbeName = typeof ENGINE_MATRIX_PROBE | typeof ENGINE_LEVEL_PROBE

const ENGINE_PROBES: ReadonlyArray<string> = [ENGINE_MATRIX_PROBE, ENGINE_LEVEL_PROBE]

export const isEngineProbe = (name: string): name is EngineProbeName => ENGINE_PROBES.includes(name)

const probeKey = (device: GPUDevice, version: string, probe: EngineProbeName): TuneKey =>
  ({ adapter: tuneAdapterOf(device), version, kernel: "subgroup-matrix-probe", shape: { probe } })

/** Keeps an engine probe's outcome (as a tuning record: its status as the choice, its timing as the median). */
export const recordMatrixProbe = (cache: TuneCache, device: GPUDevice, result: ProbeResult, version = canopyVersion()): void => {
  if (!isEngineProbe(result.probe)) throw new RangeError(`only the engine probes (${ENGINE_PROBES.join(", ")}) are kept, not ${result.probe}`)
  cache.set(probeKey(device, version, result.probe), {
    choice: result.status,
    medianMs: result.timed === undefined ? {} : { [result.probe]: result.timed.ms },
    tunedAt: new Date().toISOString()
  })
}

/** What an engine probe (default: the matmul's) said on this device's adapter for `version`, or undefined where it never ran (or crashed). */
export const matrixProbeStatus = (
  cache: TuneCache | undefined, device: GPUDevice, version = canopyVersion(), probe: EngineProbeName = ENGINE_MATRIX_PROBE
): string | undefined => cache?.get(probeKey(device, version, probe))?.choice
