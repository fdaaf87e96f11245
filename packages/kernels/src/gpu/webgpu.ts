/**
 * Opening a device on any WebGPU implementation: Dawn's instance in Node.js
 * (see openGpu) or a browser's `navigator.gpu`. Platform-neutral: no Node
 * module is imported here, so a page can use it.
 */
import { describeCapabilities, type GpuAdapterSummary, rememberAdapter, rememberLost } from "./adapters.ts"
import type { GpuHandle } from "./device.ts"
import { GpuDeviceLost, GpuNoAdapter } from "./errors.ts"

/** The optional features Canopy's kernels use, requested where the adapter has them. */
export const DEFAULT_FEATURES: ReadonlyArray<string> = [
  "shader-f16",
  "subgroups",
  "timestamp-query",
  "chromium-experimental-subgroup-matrix"
]

/** Names the adapter and tells a software one (SwiftShader, llvmpipe, …) by its info strings. */
export const summarizeAdapter = (info: GPUAdapterInfo): GpuAdapterSummary => {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase()
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: /swiftshader|llvmpipe|lavapipe|software|cpu/.test(text)
  }
}

/** Every numeric limit the adapter offers, so large buffers and workgroups are allowed. */
export const adapterLimits = (adapter: GPUAdapter): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key]
    if (typeof value === "number") out[key] = value
  }
  return out
}

/**
 * Requests the device of `adapter` with every limit it offers and the wanted
 * features it has, records what the device can do (capabilitiesOf) and
 * watches for its loss. `instance` is kept on the handle: Dawn's must outlive
 * the device.
 */
export const openAdapterDevice = async (
  instance: GPU,
  adapter: GPUAdapter,
  wantFeatures: ReadonlyArray<string> = DEFAULT_FEATURES
): Promise<GpuHandle> => {
  const requiredFeatures = wantFeatures.filter((f) => adapter.features.has(f)) as Array<GPUFeatureName>
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits: adapterLimits(adapter) })
  const summary = summarizeAdapter(adapter.info)
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

/** What a browser needs for WebGPU, for the message when it has none. */
export const BROWSER_WEBGPU_HINT =
  "WebGPU is on by default in Chrome and Edge 113+ on Windows, macOS and ChromeOS (121+ on Android), " +
  "Safari 26+ (macOS, iOS) and Firefox 141+ on Windows (145+ on Apple-silicon macOS); on Linux start " +
  "Chrome or Chromium with --enable-unsafe-webgpu --enable-features=Vulkan. The page must come from " +
  "https:// or http://localhost: WebGPU needs a secure context"

/**
 * Opens a device on a browser's WebGPU (`navigator.gpu`, undefined where the
 * browser has none). Rejects with GpuNoAdapter, saying which browsers and
 * flags give WebGPU, when there is no `navigator.gpu` or no adapter.
 */
export const openWebGpu = async (gpu: GPU | undefined, wantFeatures?: ReadonlyArray<string>): Promise<GpuHandle> => {
  if (gpu === undefined) throw new GpuNoAdapter({ tried: ["navigator.gpu (absent)"], hint: BROWSER_WEBGPU_HINT })
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null)
  if (adapter === null) throw new GpuNoAdapter({ tried: ["navigator.gpu.requestAdapter() (no adapter)"], hint: BROWSER_WEBGPU_HINT })
  return openAdapterDevice(gpu, adapter, wantFeatures)
}
