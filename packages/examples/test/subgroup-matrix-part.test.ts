/**
 * The GPU entry's subgroup-matrix part runs each probe in a child process, so
 * that a driver aborting on one construct is reported and the ladder goes on.
 * A stand-in entry plays the probes here (the real ones are skipped on a
 * software adapter, as the pack test shows): one aborts, one hangs, one exits
 * with an error, the rest print their result lines.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ENGINE_LEVEL_PROBE, ENGINE_MATRIX_PROBE, matrixProbeStatus, memoryTuneCache, openGpu, SUBGROUP_MATRIX_PROBES } from "@canopy/kernels"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runIsolated } from "../src/bench/isolated.ts"
import { PROBE_FLAG } from "../src/bench/probeFlag.ts"
import { keepEngineProbes, probeOutcome, runProbesIsolated } from "../src/bench/subgroupMatrixPart.ts"
import { scaled } from "./limits.ts"

const STAND_IN = `
const [flag, name] = process.argv.slice(2)
if (flag !== ${JSON.stringify(PROBE_FLAG)}) process.exit(2)
console.log("opening the device")
if (name === "workgroup-2x4-arrays") { console.error("pthread_mutex_lock: assertion failed"); process.abort() }
if (name === "split-f32-4x4") setInterval(() => {}, 1000)
else if (name === "global-1x4") { console.error("out of device memory"); process.exit(3) }
else console.log("PROBE " + JSON.stringify({ probe: name, adds: "stand-in", status: "ok", error: 1e-7, tolerance: 1e-4 }))
`

describe("probes in processes of their own", () => {
  let dir: string
  let entry: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "canopy-probes-"))
    entry = join(dir, "entry.mjs")
    writeFileSync(entry, STAND_IN)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("tells how a child ended: an abort's signal, an exit code with its output, a hang killed at the limit", async () => {
    const aborted = await runIsolated(["-e", "console.error('about to abort'); process.abort()"], scaled(5000))
    expect([aborted.code, aborted.signal, aborted.timedOut]).toEqual([null, "SIGABRT", false])
    expect(aborted.stderr).toContain("about to abort")
    const failed = await runIsolated(["-e", "console.log('out'); console.error('err'); process.exit(3)"], scaled(5000))
    expect([failed.code, failed.signal, failed.timedOut, failed.stdout, failed.stderr]).toEqual([3, null, false, "out\n", "err\n"])
    const hung = await runIsolated(["-e", "setInterval(() => {}, 1000)"], 300)
    expect([hung.code, hung.signal, hung.timedOut]).toEqual([null, "SIGKILL", true])
  })

  it("reports each probe in order, a crash, a hang and a failed exit among them, and runs every probe", async () => {
    const seen: Array<string> = []
    const results = await runProbesIsolated(entry, (r) => seen.push(r.probe), scaled(500))
    const names = SUBGROUP_MATRIX_PROBES.map((p) => p.name)
    expect(results.map((r) => r.probe)).toEqual(names)
    expect(seen).toEqual(names)
    const status = Object.fromEntries(results.map((r) => [r.probe, r.status]))
    expect(status).toEqual({
      "global-1x1": "ok", "global-1x4": "crashed", "workgroup-2x4": "ok",
      "workgroup-2x4-arrays": "crashed", "split-f32-2x4": "ok", "split-f32-4x4": "timed out", "attention-split-f32": "ok",
      "engine-matmul": "ok", "engine-level-attention": "ok"
    })
    const detail = (name: string) => results.find((r) => r.probe === name)!.detail ?? ""
    expect(detail("workgroup-2x4-arrays")).toMatch(/signal SIGABRT[\s\S]*pthread_mutex_lock: assertion failed/)
    expect(detail("global-1x4")).toMatch(/exit code 3[\s\S]*out of device memory/)
    expect(detail("split-f32-4x4")).toContain("opening the device")
    // the adds of a probe that crashed come from the ladder, not from the child
    expect(results.find((r) => r.probe === "global-1x4")!.adds).toBe(SUBGROUP_MATRIX_PROBES[1]!.adds)
  })
})

describe("the matrix matmul's probe, kept for the tuner", () => {
  const bin = fileURLToPath(new URL("../bin/canopy.mjs", import.meta.url))
  const engine = SUBGROUP_MATRIX_PROBES.find((p) => p.name === ENGINE_MATRIX_PROBE)!

  it("keeps the engine probes' outcomes, a crash too, so an earlier ok does not outlive a driver that now fails", async () => {
    const gpu = await openGpu()
    try {
      const cache = memoryTuneCache()
      const result = (probe: string, status: "ok" | "crashed") => ({ probe, adds: engine.adds, status })
      const levelStatus = () => matrixProbeStatus(cache, gpu.device, undefined, ENGINE_LEVEL_PROBE)
      expect(keepEngineProbes(gpu.device, [{ probe: "global-1x1", adds: "", status: "ok" }], cache)).toEqual({ matmul: false, level: false })
      expect(matrixProbeStatus(cache, gpu.device)).toBeUndefined()
      expect(keepEngineProbes(gpu.device, [result(ENGINE_MATRIX_PROBE, "ok")], cache)).toEqual({ matmul: true, level: false })
      expect([matrixProbeStatus(cache, gpu.device), levelStatus()]).toEqual(["ok", undefined])
      expect(keepEngineProbes(gpu.device, [result(ENGINE_MATRIX_PROBE, "crashed"), result(ENGINE_LEVEL_PROBE, "ok")], cache))
        .toEqual({ matmul: false, level: true })
      expect([matrixProbeStatus(cache, gpu.device), levelStatus()]).toEqual(["crashed", "ok"])
    } finally {
      gpu.close()
    }
  })

  it("runs in a child of the command line, which answers the probe flag before any command", async () => {
    const run = await runIsolated([bin, PROBE_FLAG, ENGINE_MATRIX_PROBE], scaled(60_000))
    expect(run.code, run.stderr).toBe(0)
    expect(probeOutcome(engine, run)).toMatchObject({ probe: ENGINE_MATRIX_PROBE, status: "skipped", detail: "the device has no chromium-experimental-subgroup-matrix" })
  })

  it("canopy probe says there is nothing to probe on a device without matrix units", async () => {
    const run = await runIsolated([bin, "probe"], scaled(60_000))
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain("nothing to probe: the device has no chromium-experimental-subgroup-matrix; the tuner uses the other matmul kernels")
  })
})
