/**
 * Dawn's adapters in Node.js (the `webgpu` package): the module, the toggles
 * every instance gets, the adapters each Vulkan driver offers, and opening
 * one of them by name.
 *
 * WebGPU's requestAdapter returns one adapter, so the list comes from Dawn's
 * `adapter=NAME` instance flag: asked for a name no adapter has, Dawn refuses
 * with the list of every adapter it found ("Available adapters: * backend:
 * 'vulkan', name: '…'"); asked for a name, it returns the adapter whose name
 * contains it. Listing opens no adapter, so it prints nothing.
 */
import { type AdapterCandidate, SOFTWARE_ADAPTER_PATTERN } from "./adapters.ts"
import { type VulkanDriver, withDriver } from "./vulkanDrivers.ts"

/**
 * Dawn toggles, given to every instance Canopy creates (Dawn takes toggles at
 * instance creation; the adapters and devices of that instance inherit them):
 * `allow_unsafe_apis` exposes `chromium-experimental-subgroup-matrix`, and on
 * NVIDIA through Vulkan `shader-f16` is offered only with
 * `vulkan_enable_f16_on_nvidia`. Elsewhere they change nothing.
 */
const DAWN_TOGGLES = ["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]

interface DawnModule {
  create(flags: Array<string>): GPU
  globals: Record<string, unknown>
}

let dawn: DawnModule | undefined
const loadDawn = (): DawnModule => {
  if (dawn === undefined) {
    const requireHere = process.getBuiltinModule("node:module").createRequire(import.meta.url)
    dawn = requireHere("webgpu") as DawnModule
    // WebGPU code refers to GPUBufferUsage, GPUShaderStage, ... as globals.
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value
    }
  }
  return dawn
}

/** A name no adapter has: Dawn answers it with the list of those it found. */
const NO_SUCH_ADAPTER = "\u0001canopy: list the adapters"

const LISTED = /^\s*\*\s*backend:\s*'([^']*)',\s*name:\s*'(.*)'\s*$/

/** The adapters Dawn's refusal lists, one per `* backend: '…', name: '…'` line. */
export const parseAdapterList = (message: string): ReadonlyArray<{ readonly backend: string; readonly name: string }> =>
  message.split("\n").flatMap((line) => {
    const m = LISTED.exec(line)
    return m === null ? [] : [{ backend: m[1]!, name: m[2]! }]
  })

/**
 * Instances that listed adapters, kept for the life of the process: one per
 * driver and environment, made once (a dropped Dawn instance can crash the
 * process), so every open after the first lists for free.
 */
const listings = new Map<string, Promise<ReadonlyArray<AdapterCandidate>>>()
const kept: Array<GPU> = []

/** The adapters `driver` offers, as Dawn names them. */
export const listDriverAdapters = (driver: VulkanDriver): Promise<ReadonlyArray<AdapterCandidate>> => {
  const key = `${driver.kind}\n${driver.icd ?? ""}`
  let listing = listings.get(key)
  if (listing === undefined) {
    listing = withDriver(driver, async () => {
      const instance = loadDawn().create([...DAWN_TOGGLES, `adapter=${NO_SUCH_ADAPTER}`])
      kept.push(instance)
      const message = await instance.requestAdapter().then(() => "", (e: unknown) => (e instanceof Error ? e.message : String(e)))
      return parseAdapterList(message).map(({ backend, name }) => ({
        name, backend, driver: driver.kind, icd: driver.icd, software: SOFTWARE_ADAPTER_PATTERN.test(name)
      }))
    })
    listings.set(key, listing)
  }
  return listing
}

/** A fresh instance that sees only `candidate`'s driver, and its adapter (null where Dawn no longer finds it). */
export const requestNamedAdapter = (
  candidate: AdapterCandidate, driver: VulkanDriver
): Promise<{ readonly instance: GPU; readonly adapter: GPUAdapter | null }> =>
  withDriver(driver, async () => {
    const instance = loadDawn().create([...DAWN_TOGGLES, `adapter=${candidate.name}`])
    const adapter = await instance.requestAdapter({ powerPreference: "high-performance" }).catch(() => null)
    return { instance, adapter }
  })
