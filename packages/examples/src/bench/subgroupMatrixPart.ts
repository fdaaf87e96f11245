/**
 * The probe ladder of the matrix units (SUBGROUP_MATRIX_PROBES), each probe
 * in a process of its own — the running program's entry (the GPU entry, the
 * command line) run again with PROBE_FLAG — so that a construct the driver
 * cannot take is reported (crashed, refused, wrong) and the ladder goes on.
 * Each probe prints its result as one `PROBE {json}` line. The engine probes'
 * outcomes, whatever they were, are then kept in the tuning cache, where the
 * tuner reads whether it may build the matrix matmul and the matrix level
 * attention (tune/matrixProbe.ts).
 */
import {
  defaultTuneCache, ENGINE_LEVEL_PROBE, ENGINE_MATRIX_PROBE, isEngineProbe, openGpu, type ProbeResult, recordMatrixProbe, runSubgroupMatrixProbe,
  SUBGROUP_MATRIX_PROBES, type TuneCache
} from "@canopy/kernels"
import { type IsolatedRun, runIsolated } from "./isolated.ts"
import { PROBE_FLAG } from "./probeFlag.ts"

const RESULT_PREFIX = "PROBE "

/** A probe compiles one kernel and times a few products: a minute is a hang. */
const PROBE_TIMEOUT_MS = 60_000

/** The child's side: runs probe `name` on a device of its own and prints its result line; the exit code. */
export const probeChild = async (name: string): Promise<number> => {
  const gpu = await openGpu()
  try {
    const result = await runSubgroupMatrixProbe(gpu.device, name)
    console.log(`${RESULT_PREFIX}${JSON.stringify(result)}`)
    return 0
  } finally {
    gpu.close()
  }
}

const lastLines = (text: string, n: number): Array<string> => text.split("\n").filter((l) => l.trim() !== "").slice(-n)

/** What a probe's process said, or how it ended when it said nothing. */
export const probeOutcome = (probe: { name: string; adds: string }, run: IsolatedRun): ProbeResult => {
  // a probe that printed its result has finished, however its process then ended
  const line = run.stdout.split("\n").reverse().find((l) => l.startsWith(RESULT_PREFIX))
  if (line !== undefined) return JSON.parse(line.slice(RESULT_PREFIX.length)) as ProbeResult
  const base = { probe: probe.name, adds: probe.adds }
  // a driver's last words are on stderr (a runtime's stack trace may follow them); the probe's progress on stdout
  const output = [...lastLines(run.stdout, 4), ...lastLines(run.stderr, 24)].join("\n")
  if (run.timedOut) return { ...base, status: "timed out", detail: `no result in ${PROBE_TIMEOUT_MS / 1000} s; last output:\n${output}` }
  const ending = run.signal !== null ? `signal ${run.signal}` : `exit code ${run.code}`
  return { ...base, status: "crashed", detail: `the probe's process ended with ${ending}; last output:\n${output}` }
}

/** Runs each probe as `node <entry> PROBE_FLAG <name>`, in order, reporting each as it ends. */
export const runProbesIsolated = async (
  entry: string,
  onResult: (result: ProbeResult) => void,
  timeoutMs = PROBE_TIMEOUT_MS
): Promise<ReadonlyArray<ProbeResult>> => {
  const results: Array<ProbeResult> = []
  for (const probe of SUBGROUP_MATRIX_PROBES) {
    const result = probeOutcome(probe, await runIsolated([entry, PROBE_FLAG, probe.name], timeoutMs))
    onResult(result)
    results.push(result)
  }
  return results
}

/** One line per probe: its status, the construct it adds, its error and rate. */
export const formatProbe = (r: ProbeResult): string => {
  const t = r.timed
  const shape = t === undefined ? "" : "keys" in t ? `${t.rows} queries × ${t.keys} keys, dim ${t.headDim}` : `${t.rows}×${t.inDim}×${t.outDim}`
  const figures = t === undefined ? "" : `, ${t.tflops.toFixed(1)} TFLOP/s at ${shape} (${t.timing})`
  const error = r.error === undefined ? "" : `, error ${r.error.toExponential(1)}`
  const detail = r.detail === undefined ? "" : ` — ${r.detail.split("\n")[0]}`
  return `${r.probe.padEnd(22)} ${r.status.padEnd(9)} ${r.adds}${error}${figures}${detail}`
}

/** Which of the engine's matrix kernels the tuner may now build on the adapter. */
export interface EngineProbesKept {
  readonly matmul: boolean
  readonly level: boolean
}

/**
 * Keeps the engine probes' outcomes among `results` in `cache` (default: the
 * tuning cache file) for `device`'s adapter — a crash or a hang too, so an
 * "ok" an earlier run kept does not outlive a driver that now fails.
 */
export const keepEngineProbes = (
  device: GPUDevice, results: ReadonlyArray<ProbeResult>, cache: TuneCache | undefined = defaultTuneCache()
): EngineProbesKept => {
  if (cache === undefined) return { matmul: false, level: false }
  for (const r of results) if (isEngineProbe(r.probe)) recordMatrixProbe(cache, device, r)
  const ok = (name: string) => results.some((r) => r.probe === name && r.status === "ok")
  return { matmul: ok(ENGINE_MATRIX_PROBE), level: ok(ENGINE_LEVEL_PROBE) }
}
