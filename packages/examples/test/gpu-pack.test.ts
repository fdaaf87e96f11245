/**
 * scripts/gpu-pack.sh, as the README uses it: a tiny entry and the GPU entry
 * packed into a folder outside the workspace (so nothing can resolve from the
 * clone's node_modules), then run with the pack's own run.sh. Here the adapter
 * is SwiftShader, so this checks the bundles, the packed Node.js, the packed
 * Dawn binary and the packed Vulkan loader, everything but the NVIDIA driver.
 * `--fast` keeps the packing to seconds; the packed Vulkan libraries come
 * from Debian's packages, as for a user.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { SUBGROUP_MATRIX_PROBES } from "@canopy/kernels"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))

interface Ran {
  readonly command: string
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (command: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Ran> =>
  new Promise((done, failed) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, detached: true })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => void (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => void (stderr += d.toString()))
    const timer = setTimeout(() => {
      stderr += "\n[killed: past its time limit]"
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // already gone
      }
    }, scaled(120_000))
    child.on("error", failed)
    child.on("close", (code) => {
      clearTimeout(timer)
      done({ command: [command, ...args].join(" "), code, stdout, stderr })
    })
  })

const report = (r: Ran): string => `\`${r.command}\` exited ${r.code}\n--- stdout ---\n${r.stdout.slice(-3000)}\n--- stderr ---\n${r.stderr.slice(-3000)}`

// Opens the GPU through the packed webgpu, computes, and says which node and which Vulkan loader ran it.
const ENTRY = `import { readFileSync } from "node:fs"
import { bindBuffers, createComputePipeline, createStorageBuffer, describeAdapter, openGpu, readFloat32, uploadBuffer, wgsl } from "@canopy/kernels"

const gpu = await openGpu()
const n = 256
const pipeline = await createComputePipeline(gpu.device, "pack-check", wgsl\`
  @group(0) @binding(0) var<storage, read> a: array<f32>;
  @group(0) @binding(1) var<storage, read_write> b: array<f32>;
  @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { b[id.x] = 2.0 * a[id.x]; }\`)
const input = uploadBuffer(gpu.device, "in", Float32Array.from({ length: n }, (_, i) => i))
const output = createStorageBuffer(gpu.device, "out", 4 * n)
const encoder = gpu.device.createCommandEncoder()
const pass = encoder.beginComputePass()
pass.setPipeline(pipeline)
pass.setBindGroup(0, bindBuffers(gpu.device, pipeline, [input, output]))
pass.dispatchWorkgroups(n / 64)
pass.end()
gpu.device.queue.submit([encoder.finish()])
const b = await readFloat32(gpu.device, output, n)
const vulkan = readFileSync("/proc/self/maps", "utf8").split("\\n").find((l) => l.includes("libvulkan.so"))?.split(/\\s+/).at(-1)
console.log(JSON.stringify({ node: process.execPath, args: process.argv.slice(2), adapter: describeAdapter(gpu.adapter), correct: b.every((x, i) => x === 2 * i), vulkan }))
gpu.close()
process.exit(0)
`

// Made by a hook, not on import: collecting this file must leave nothing behind.
let entryDir: string | undefined
let packDir: string | undefined
let entry = ""
let pack = ""
beforeAll(() => {
  entryDir = mkdtempSync(join(root, "packages/examples/.gpu-pack-"))
  packDir = mkdtempSync(join(tmpdir(), "canopy-gpu-pack-"))
  entry = join(entryDir, "pack-check.ts")
  pack = join(packDir, "pack")
})
afterAll(() => {
  for (const dir of [entryDir, packDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe("scripts/gpu-pack.sh", () => {
  it("refuses a call without entries, or with a missing one, before packing anything", async () => {
    const none = await run("bash", ["scripts/gpu-pack.sh", "--out", pack])
    expect(none.code, report(none)).toBe(2)
    expect(none.stderr).toContain("usage:")
    const missing = await run("bash", ["scripts/gpu-pack.sh", "--out", pack, "no/such/entry.ts"])
    expect(missing.code, report(missing)).toBe(2)
    expect(missing.stderr).toContain("no/such/entry.ts")
    expect(existsSync(join(pack, "node.xz"))).toBe(false)
  })

  describe("a pack of a tiny entry and the GPU entry", () => {
    beforeAll(async () => {
      writeFileSync(entry, ENTRY)
      const r = await run("bash", ["scripts/gpu-pack.sh", "--fast", "--out", pack, entry, "packages/examples/src/bench/gpu-entry.ts"])
      expect(r.code, report(r)).toBe(0)
    })

    it("holds the bundles, Node.js, the webgpu binary, the Vulkan loader and the runner", () => {
      for (const file of [
        "pack-check.mjs", "gpu-entry.mjs", "node.xz", "run.sh", "pack.txt",
        "node_modules/webgpu/index.js", "node_modules/webgpu/package.json", "node_modules/webgpu/dist/linux-x64/dawn.node.xz",
        "lib/libvulkan.so.1", "lib/libGLdispatch.so.0"
      ]) expect(existsSync(join(pack, file)), file).toBe(true)
      expect(readFileSync(join(pack, "pack.txt"), "utf8")).toContain(`node:    ${process.version}`)
    })

    it("runs a bundle with the packed node, passing its arguments, and computes on the adapter", async () => {
      const r = await run("bash", [join(pack, "run.sh"), "pack-check.mjs", "one", "two"])
      expect(r.code, report(r)).toBe(0)
      const seen = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>
      expect(seen["node"]).toBe(join(pack, ".unpacked/node"))
      expect(seen["args"]).toEqual(["one", "two"])
      expect(seen["correct"]).toBe(true)
    })

    it("runs with the packed Vulkan loader where told to (as on a machine without one)", async () => {
      const r = await run("bash", [join(pack, "run.sh"), "pack-check.mjs"], { CANOPY_GPU_PACKED_LIBS: "1" })
      expect(r.code, report(r)).toBe(0)
      const seen = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>
      expect(String(seen["vulkan"])).toContain(join(pack, "lib/"))
      expect(seen["correct"]).toBe(true)
    })

    it("runs the GPU entry's quick checks, as the README's first GPU command does", async () => {
      const out = join(packDir!, "OUT")
      const r = await run("bash", [join(pack, "run.sh"), "gpu-entry.mjs", out, "smoke", "decode-smoke", "schedule-smoke", "subgroup-matrix"])
      expect(r.code, report(r)).toBe(0)
      for (const file of [
        "roofline.json", "attention-smoke.json", "attention-smoke.svg", "decode-smoke.json", "decode-smoke.svg", "schedule-smoke.json", "subgroup-matrix.json"
      ]) {
        expect(existsSync(join(out, file)), file).toBe(true)
      }
      // both engines ran, overlapped and stepwise, with the same completions (the entry fails otherwise)
      const schedule = JSON.parse(readFileSync(join(out, "schedule-smoke.json"), "utf8")) as { identical: boolean; overlapSpeedup?: { n: number } }
      expect([schedule.identical, schedule.overlapSpeedup?.n]).toEqual([true, 1])
      // each part ran in a child process of its own, and said how it ended
      const parts = JSON.parse(readFileSync(join(out, "parts.json"), "utf8")) as { deadlineSeconds: number | null; parts: Array<{ part: string; status: string }> }
      expect(parts.deadlineSeconds).toBeNull()
      expect(parts.parts.map((p) => [p.part, p.status])).toEqual(["smoke", "decode-smoke", "schedule-smoke", "subgroup-matrix"].map((p) => [p, "ok"]))
      // every probe ran in a child process of the bundle and said why it was skipped: SwiftShader has no matrix units
      const probes = JSON.parse(readFileSync(join(out, "subgroup-matrix.json"), "utf8")) as { probes: Array<{ status: string; detail: string }> }
      expect(probes.probes.map((p) => [p.status, p.detail])).toEqual(
        SUBGROUP_MATRIX_PROBES.map(() => ["skipped", "the device has no chromium-experimental-subgroup-matrix"]))
    })

    it("skips the GPU entry's parts that the deadline leaves no time for, saying so, and fails", async () => {
      const out = join(packDir!, "OUT-deadline")
      const r = await run("bash", [join(pack, "run.sh"), "gpu-entry.mjs", out, "--deadline", "10", "smoke"])
      expect(r.code, report(r)).toBe(1)
      const parts = JSON.parse(readFileSync(join(out, "parts.json"), "utf8")) as unknown
      expect(parts).toEqual({ deadlineSeconds: 10, parts: [{ part: "smoke", status: "skipped", seconds: 0, detail: expect.stringMatching(/^\d+ s of the deadline left$/) }] })
      const bad = await run("bash", [join(pack, "run.sh"), "gpu-entry.mjs", out, "--deadline", "soon"])
      expect(bad.code, report(bad)).toBe(2)
      expect(bad.stderr).toContain("--deadline takes a positive number of seconds, got soon")
    })

    it("names the bundles it has when asked for one it does not", async () => {
      const r = await run("bash", [join(pack, "run.sh"), "nothere.mjs"])
      expect(r.code, report(r)).toBe(2)
      expect(r.stderr).toContain("pack-check.mjs")
    })
  })
})
