/**
 * `canopy adapter` and CANOPY_ADAPTER, as a user runs them: every adapter
 * listed with what it offers and the picked one marked, a name picking
 * another adapter wherever Canopy opens a device (here the attention oracle
 * too), a user's VK_ICD_FILENAMES honoured, and a name no adapter has refused
 * with the list of those there are.
 */
import { SWIFTSHADER_ICD_PATHS } from "@canopy/kernels"
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { describeOnLavapipe } from "./lavapipe.ts"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const canopy = (args: ReadonlyArray<string>, env: Record<string, string> = {}, input?: string) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    ...(input === undefined ? {} : { input }),
    // spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
    timeout: scaled(60_000)
  })

const swiftshaderIcd = SWIFTSHADER_ICD_PATHS.find((p) => existsSync(p))
const hasGpuNode = existsSync("/dev/nvidia0") || existsSync("/dev/nvidiactl")

/** The listing's adapter lines: the mark, then the name. */
const adapterLines = (stdout: string) => stdout.split("\n").filter((l) => /^[* ] \S/.test(l)).map((l) => ({ picked: l.startsWith("*"), line: l.slice(2) }))

describe.skipIf(swiftshaderIcd === undefined || hasGpuNode)("canopy adapter on a machine without a GPU (SwiftShader installed)", () => {
  it("lists every adapter with the features Canopy uses and its limits, marks SwiftShader as picked, and opens it", () => {
    const r = canopy(["adapter"])
    expect(r.status, r.stderr).toBe(0)
    const lines = adapterLines(r.stdout)
    expect(lines.filter((l) => l.picked).map((l) => l.line)).toEqual([
      `SwiftShader Device (Subzero)  [vulkan, software; swiftshader ICD ${swiftshaderIcd}]`
    ])
    expect(r.stdout).toMatch(/^ {4}features: shader-f16 no, subgroups yes, chromium-experimental-subgroup-matrix no, timestamp-query yes$/m)
    expect(r.stdout).toMatch(/^ {4}limits: {3}storage binding 1 GiB, buffer 1 GiB, workgroup storage 32 KiB, 256 invocations per workgroup/m)
    expect(r.stdout).toMatch(/^adapter: {2}google \/ swiftshader .*\(software\)$/m)
    expect(r.stdout).toContain("compute:  4096 values correct")
  })

  it("refuses a CANOPY_ADAPTER no adapter's name contains (exit 1), naming the adapters there are", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "no-such-gpu" })
    expect(r.status).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain('canopy: GpuNoAdapter: no WebGPU adapter found (tried: an adapter whose name contains "no-such-gpu"')
    expect(r.stderr).toContain('the adapters here are "SwiftShader Device (Subzero)" (software)')
  })

  it("honours a VK_ICD_FILENAMES the user set: only its drivers are listed", () => {
    const r = canopy(["adapter"], { VK_ICD_FILENAMES: swiftshaderIcd! })
    expect(r.status, r.stderr).toBe(0)
    expect(adapterLines(r.stdout)).toEqual([{ picked: true, line: `SwiftShader Device (Subzero)  [vulkan, software; VK_ICD_FILENAMES ${swiftshaderIcd}]` }])
  })
})

describeOnLavapipe("CANOPY_ADAPTER=llvmpipe (lavapipe, shader-f16)", () => {
  it("picks lavapipe in canopy adapter, which lists it with shader-f16", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "llvmpipe" })
    expect(r.status, r.stderr).toBe(0)
    const picked = adapterLines(r.stdout).filter((l) => l.picked)
    expect(picked).toHaveLength(1)
    expect(picked[0]!.line).toMatch(/^llvmpipe \(LLVM [^)]*\)  \[vulkan, software; lavapipe ICD .*lvp_icd\.json\]$/)
    expect(r.stdout).toMatch(/^ {4}features: shader-f16 yes, subgroups yes/m)
    expect(r.stdout).toMatch(/^adapter: {2}mesa \/ .*llvmpipe.*\(software\)$/m)
  })

  it("answers the attention oracle on lavapipe's native f16 path, exactly on a one-token case", () => {
    const v = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 0.1, -1 / 3, 2049, 0.5, -2]
    const input = {
      heads: 2, kvHeads: 1, headDim: 8, method: "baseline", kvDtype: "f16",
      nodes: [{ parent: null, length: 1, k: [1, 0, 0, 0, 0, 0, 0, 0], v }],
      queries: [{ node: 0, q: [1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0] }]
    }
    const r = canopy(["attention"], { CANOPY_ADAPTER: "llvmpipe" }, JSON.stringify(input))
    expect(r.status, r.stderr).toBe(0)
    const answer = JSON.parse(r.stdout) as { out: Array<Array<number>>; lse: Array<Array<number>>; adapter: string }
    expect(answer.adapter).toMatch(/llvmpipe/)
    const f16 = [1, 1 + 2 ** -9, 65504, 0.0999755859375, -0.333251953125, 2048, 0.5, -2]
    expect(answer.out[0]).toEqual([...f16, ...f16])
    expect(answer.lse[0]![0]).toBeCloseTo(1 / Math.sqrt(8), 6)
    expect(answer.lse[0]![1]).toBeCloseTo(0, 6)
  })
})
