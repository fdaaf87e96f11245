/**
 * Which adapter Canopy opens: the choice (CANOPY_ADAPTER) against lists of
 * adapters, checked against the rule written out here on its own; Dawn's
 * adapter list as parsed; and, on this machine, the drivers actually found.
 */
import fc from "fast-check"
import { afterEach, describe, expect, it } from "vitest"
import { type AdapterCandidate, type AdapterChoice, parseAdapterChoice, pickAdapter } from "../src/gpu/adapters.ts"
import { parseAdapterList } from "../src/gpu/dawnAdapters.ts"
import { describeAdapter, listAdapters, openGpu } from "../src/gpu/device.ts"
import { SWIFTSHADER_ICD_PATHS } from "../src/gpu/vulkanDrivers.ts"
import { existsSync } from "node:fs"
import { lavapipeMissing } from "./lavapipe.ts"

const NAMES = [
  { name: "NVIDIA H100 80GB HBM3", software: false },
  { name: "AMD Radeon RX 7900", software: false },
  { name: "SwiftShader Device (Subzero)", software: true },
  { name: "llvmpipe (LLVM 15.0.6, 256 bits)", software: true },
  { name: "Some CPU Adapter", software: true }
]

const candidates = fc.uniqueArray(fc.constantFrom(...NAMES), { maxLength: NAMES.length, selector: (n) => n.name }).map((list) =>
  list.map(({ name, software }): AdapterCandidate => ({ name, software, backend: "vulkan", driver: "system", icd: undefined }))
)

const choices: fc.Arbitrary<AdapterChoice> = fc.oneof(
  fc.constantFrom<AdapterChoice>("auto", "hardware", "software"),
  fc.constantFrom("nvidia", "SWIFT", "llvmpipe", "radeon", "cpu", "intel", "(").map((name) => ({ name }))
)

/** The rule: hardware first, in listed order; then SwiftShader, then lavapipe (llvmpipe), then other software. */
const expected = (list: ReadonlyArray<AdapterCandidate>, choice: AdapterChoice): AdapterCandidate | undefined => {
  const tier = (c: AdapterCandidate) => (!c.software ? 0 : /swiftshader/i.test(c.name) ? 1 : /llvmpipe/i.test(c.name) ? 2 : 3)
  const fits = (c: AdapterCandidate) =>
    choice === "auto" ? true : choice === "hardware" ? !c.software : choice === "software" ? c.software : c.name.toLowerCase().includes(choice.name.toLowerCase())
  for (let t = 0; t <= 3; t++) {
    const hit = list.find((c) => tier(c) === t && fits(c))
    if (hit !== undefined) return hit
  }
  return undefined
}

describe("picking an adapter", () => {
  it("picks as the rule says for any list of adapters and any choice", () => {
    fc.assert(fc.property(candidates, choices, (list, choice) => {
      expect(pickAdapter(list, choice)).toBe(expected(list, choice))
    }), { numRuns: 500 })
  })

  it("reads CANOPY_ADAPTER: empty or auto, hardware, software, or part of a name", () => {
    expect([undefined, "", "  ", "auto"].map(parseAdapterChoice)).toEqual(["auto", "auto", "auto", "auto"])
    expect(parseAdapterChoice("hardware")).toBe("hardware")
    expect(parseAdapterChoice("software")).toBe("software")
    expect(parseAdapterChoice(" llvmpipe ")).toEqual({ name: "llvmpipe" })
    expect(parseAdapterChoice("Software")).toBe("software")
    expect(parseAdapterChoice("SwiftShader")).toEqual({ name: "SwiftShader" })
  })

  it("prefers SwiftShader to lavapipe as the software adapter, and any hardware to both", () => {
    const [h100, , swiftshader, lavapipe] = NAMES.map(({ name, software }): AdapterCandidate => ({ name, software, backend: "vulkan", driver: "system", icd: undefined }))
    expect(pickAdapter([lavapipe!, swiftshader!], "auto")).toBe(swiftshader)
    expect(pickAdapter([lavapipe!, swiftshader!, h100!], "auto")).toBe(h100)
    expect(pickAdapter([lavapipe!, swiftshader!], "hardware")).toBeUndefined()
    expect(pickAdapter([lavapipe!, swiftshader!], { name: "LLVMPIPE" })).toBe(lavapipe)
    expect(pickAdapter([], "auto")).toBeUndefined()
  })

  it("parses the adapter list in Dawn's refusal of an unknown adapter name", () => {
    const message = "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'SwiftShader Device (Subzero)'\n" +
      " * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'\n"
    expect(parseAdapterList(message)).toEqual([
      { backend: "vulkan", name: "SwiftShader Device (Subzero)" },
      { backend: "vulkan", name: "llvmpipe (LLVM 15.0.6, 256 bits)" }
    ])
    expect(parseAdapterList("no suitable backends found\nAvailable adapters:\n")).toEqual([])
  })
})

const swiftshaderIcd = SWIFTSHADER_ICD_PATHS.find((p) => existsSync(p))

describe.skipIf(swiftshaderIcd === undefined)("the adapters on this machine (SwiftShader installed)", () => {
  const saved = { icd: process.env["VK_ICD_FILENAMES"], files: process.env["VK_DRIVER_FILES"] }
  afterEach(() => {
    for (const [name, value] of [["VK_ICD_FILENAMES", saved.icd], ["VK_DRIVER_FILES", saved.files]] as const) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })

  it("lists SwiftShader, and lavapipe with shader-f16 where it was fetched, marking the one openGpu opens", async () => {
    const listed = await listAdapters("auto")
    const names = listed.map((a) => a.candidate.name)
    expect(names.some((n) => /swiftshader/i.test(n))).toBe(true)
    if (lavapipeMissing === undefined) {
      const lavapipe = listed.find((a) => /llvmpipe/.test(a.candidate.name))!
      expect(lavapipe.features).toContain("shader-f16")
      expect(lavapipe.candidate.driver).toBe("lavapipe")
    }
    expect(listed.filter((a) => a.picked)).toHaveLength(1)
    const gpu = await openGpu({ adapter: "auto" })
    try {
      const picked = listed.find((a) => a.picked)!
      expect(gpu.adapter.description).toBe(picked.summary!.description)
    } finally {
      gpu.close()
    }
  })

  it("opens the adapter a name picks, case-insensitively, and leaves the loader's environment as it was", async () => {
    const gpu = await openGpu({ adapter: { name: "SWIFTSHADER" } })
    try {
      expect(describeAdapter(gpu.adapter)).toMatch(/swiftshader/i)
      expect(process.env["VK_ICD_FILENAMES"]).toBe(saved.icd)
    } finally {
      gpu.close()
    }
  })

  it("refuses a name no adapter has with GpuNoAdapter, naming the adapters there are", async () => {
    const error = await openGpu({ adapter: { name: "no-such-gpu" } }).then(() => undefined, (e: unknown) => e)
    expect(error).toMatchObject({ _tag: "GpuNoAdapter" })
    expect((error as Error).message).toContain('an adapter whose name contains "no-such-gpu"')
    expect((error as Error).message).toContain('"SwiftShader Device (Subzero)" (software)')
    expect((error as Error).message).toContain("set CANOPY_ADAPTER to part of one of these names")
  })

  it("honours a VK_ICD_FILENAMES the user set: only the drivers it names", async () => {
    process.env["VK_ICD_FILENAMES"] = swiftshaderIcd!
    const listed = await listAdapters("auto")
    expect(listed.map((a) => [a.candidate.driver, a.candidate.icd, a.picked])).toEqual([["user", swiftshaderIcd, true]])
    process.env["VK_ICD_FILENAMES"] = "/nonexistent/icd.json"
    const error = await openGpu({ adapter: "software" }).then(() => undefined, (e: unknown) => e)
    expect((error as Error).message).toContain("no WebGPU adapter found (tried: VK_ICD_FILENAMES=/nonexistent/icd.json)")
  })
})
