/**
 * Opening a WebGPU device in Node.js through Dawn (the `webgpu` package).
 *
 * Hardware adapter first; when Dawn finds none, SwiftShader (a software Vulkan
 * driver shipped by Debian's `chromium` package) is tried by pointing the Vulkan
 * loader at its ICD file. The Dawn instance returned by `create()` must outlive
 * the device (a dropped instance can crash the process), so it is kept on the
 * returned handle until `close()`.
 */
import { existsSync, readdirSync } from "node:fs"
import { createRequire } from "node:module"
import { describeCapabilities, type GpuAdapterSummary, type GpuCapabilities, rememberAdapter, rememberLost } from "./adapters.ts"
import { GpuDeviceLost, GpuNoAdapter } from "./errors.ts"


export interface GpuHandle {
  readonly device: GPUDevice
  readonly adapter: GpuAdapterSummary
  readonly features: ReadonlySet<string>
  readonly limits: GPUSupportedLimits
  /** Has `timestamp-query`: kernels can be timed on the GPU itself. */
  readonly timestamps: boolean
  /** What the device can do (features, limits, software or not), recorded once here; kernels read it via capabilitiesOf. */
  readonly capabilities: GpuCapabilities
  /** The Dawn instance: it must stay referenced for as long as the device lives. */
  readonly instance: GPU
  /** Destroys the device and releases the Dawn instance. Idempotent. */
  close(): void
}

export interface OpenGpuOptions {
  /** "auto" (hardware, then software), "hardware" only, or "software" only */
  readonly adapter?: "auto" | "hardware" | "software"
  /** Features requested where the adapter has them. */
  readonly wantFeatures?: ReadonlyArray<string>
}

/** Where Debian's chromium package puts SwiftShader's Vulkan ICD. */
export const SWIFTSHADER_ICD_PATHS: ReadonlyArray<string> = [
  "/usr/lib/chromium/vk_swiftshader_icd.json",
  "/usr/lib/chromium-browser/vk_swiftshader_icd.json",
  "/usr/lib64/chromium/vk_swiftshader_icd.json"
]

export const INSTALL_HINT =
  "install a software Vulkan driver and loader: `apt-get install -y chromium-common libvulkan1` " +
  "(Canopy finds SwiftShader's ICD at /usr/lib/chromium/vk_swiftshader_icd.json by itself), " +
  "or run on a machine with a GPU and its Vulkan driver"

const DEFAULT_FEATURES = [
  "shader-f16",
  "subgroups",
  "timestamp-query",
  "chromium-experimental-subgroup-matrix"
]

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
    const require = createRequire(import.meta.url)
    dawn = require("webgpu") as DawnModule
    // WebGPU code refers to GPUBufferUsage, GPUShaderStage, ... as globals.
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value
    }
  }
  return dawn
}

const summarize = (info: GPUAdapterInfo): GpuAdapterSummary => {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase()
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: /swiftshader|llvmpipe|lavapipe|software|cpu/.test(text)
  }
}

const hasGpuDeviceNode = (): boolean => {
  if (existsSync("/dev/nvidia0") || existsSync("/dev/nvidiactl")) return true
  try {
    return readdirSync("/dev/dri").some((name) => name.startsWith("renderD"))
  } catch {
    return process.platform !== "linux" // elsewhere, just ask the drivers
  }
}

const findSwiftShader = (): string | undefined => SWIFTSHADER_ICD_PATHS.find((p) => existsSync(p))

const tryAdapter = async (instance: GPU): Promise<GPUAdapter | null> => {
  try {
    return await instance.requestAdapter({ powerPreference: "high-performance" })
  } catch {
    return null
  }
}

/** Every numeric limit the adapter offers, so large buffers and workgroups are allowed. */
const adapterLimits = (adapter: GPUAdapter): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key]
    if (typeof value === "number") out[key] = value
  }
  return out
}

/**
 * Opens a device. Rejects with `GpuNoAdapter` (saying what to install) when no
 * adapter can be found at all.
 */
export const openGpu = async (options: OpenGpuOptions = {}): Promise<GpuHandle> => {
  const mode = options.adapter ?? (process.env["CANOPY_ADAPTER"] as OpenGpuOptions["adapter"]) ?? "auto"
  const { create } = loadDawn()
  let instance: GPU | undefined
  let adapter: GPUAdapter | null = null
  const tried: Array<string> = []

  // The Vulkan loader complains on stderr when this is unset.
  process.env["XDG_RUNTIME_DIR"] ??= "/tmp"
  // With no GPU device node, asking the hardware drivers only prints their refusals.
  if (mode === "hardware" || (mode === "auto" && hasGpuDeviceNode())) {
    instance = create(DAWN_TOGGLES)
    adapter = await tryAdapter(instance)
    tried.push("hardware (Vulkan)")
  }
  if (adapter === null && mode !== "hardware") {
    const icd = process.env["VK_ICD_FILENAMES"] ?? findSwiftShader()
    tried.push(`software (SwiftShader ICD: ${icd ?? "not found"})`)
    if (icd !== undefined) {
      // The Vulkan loader reads these when Dawn creates its Vulkan instance.
      process.env["VK_ICD_FILENAMES"] = icd
      process.env["VK_DRIVER_FILES"] = icd
      instance = create(DAWN_TOGGLES)
      adapter = await tryAdapter(instance)
    }
  }
  if (adapter === null || instance === undefined) {
    throw new GpuNoAdapter({ tried, hint: INSTALL_HINT })
  }

  const want = options.wantFeatures ?? DEFAULT_FEATURES
  const requiredFeatures = want.filter((f) => adapter.features.has(f)) as Array<GPUFeatureName>
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: adapterLimits(adapter)
  })
  const summary = summarize(adapter.info)
  const capabilities = describeCapabilities(device, summary.software)
  rememberAdapter(device, summary, capabilities)
  let closed = false
  void device.lost.then((info) => {
    if (!closed && info.reason !== "destroyed") rememberLost(device, new GpuDeviceLost({ reason: info.reason, message: info.message }))
  })
  return {
    device,
    adapter: summary,
    features: new Set(device.features),
    limits: device.limits,
    timestamps: capabilities.timestamps,
    capabilities,
    instance,
    close() {
      if (closed) return
      closed = true
      device.destroy()
    }
  }
}

export const describeAdapter = (a: GpuAdapterSummary): string =>
  [a.vendor, a.architecture, a.device, a.description].filter((s) => s.length > 0).join(" / ") +
  (a.software ? " (software)" : "")
