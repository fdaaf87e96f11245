/**
 * What Canopy knows about each device it opened: the adapter it came from and
 * whether it was lost. Platform-neutral (no Node imports), so kernels can ask
 * in a browser too.
 */
import type { GpuDeviceLost } from "./errors.ts"

export interface GpuAdapterSummary {
  readonly vendor: string
  readonly architecture: string
  readonly device: string
  readonly description: string
  /** true for SwiftShader (or any CPU adapter): only ratios of timings mean anything there */
  readonly software: boolean
}

/**
 * What a device can do, recorded once when it opens (openGpu) and handed to
 * the kernel builders, which pick their variants from it: the optional
 * features Canopy uses, the limits that size its kernels and buffers, and
 * whether the adapter is software.
 */
export interface GpuCapabilities {
  /** `shader-f16`: f16 arithmetic and storage in WGSL (`enable f16`) */
  readonly shaderF16: boolean
  /** `subgroups` */
  readonly subgroups: boolean
  /** `chromium-experimental-subgroup-matrix` */
  readonly subgroupMatrix: boolean
  /** `timestamp-query` */
  readonly timestamps: boolean
  /** SwiftShader, llvmpipe, lavapipe or another CPU adapter */
  readonly software: boolean
  readonly limits: GpuKernelLimits
}

/** The device limits Canopy's kernels and buffers are sized by. */
export interface GpuKernelLimits {
  readonly maxStorageBufferBindingSize: number
  readonly maxBufferSize: number
  readonly maxComputeWorkgroupStorageSize: number
  readonly maxComputeInvocationsPerWorkgroup: number
  readonly maxComputeWorkgroupSizeX: number
  readonly maxComputeWorkgroupsPerDimension: number
  readonly maxStorageBuffersPerShaderStage: number
  readonly minStorageBufferOffsetAlignment: number
}

/** The record of a device as it was granted (its features and limits, not the adapter's offer). */
export const describeCapabilities = (device: GPUDevice, software: boolean): GpuCapabilities => {
  const l = device.limits
  return {
    shaderF16: device.features.has("shader-f16"),
    subgroups: device.features.has("subgroups"),
    subgroupMatrix: device.features.has("chromium-experimental-subgroup-matrix"),
    timestamps: device.features.has("timestamp-query"),
    software,
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment
    }
  }
}

const adapters = new WeakMap<GPUDevice, GpuAdapterSummary>()
const capabilities = new WeakMap<GPUDevice, GpuCapabilities>()
const lostDevices = new WeakMap<GPUDevice, GpuDeviceLost>()

/**
 * Tells Canopy which adapter a device came from, so kernels can tune for it,
 * and records what the device can do (see capabilitiesOf). openGpu does this;
 * a page that opens its own device may do it too.
 */
export const rememberAdapter = (device: GPUDevice, adapter: GpuAdapterSummary, record?: GpuCapabilities): void => {
  adapters.set(device, adapter)
  capabilities.set(device, record ?? describeCapabilities(device, adapter.software))
}

/**
 * The capability record of a device: the one made when it opened, or — for a
 * device nobody described — one made now from its features and limits (not
 * software) and kept.
 */
export const capabilitiesOf = (device: GPUDevice): GpuCapabilities => {
  let record = capabilities.get(device)
  if (record === undefined) {
    record = describeCapabilities(device, false)
    capabilities.set(device, record)
  }
  return record
}

/** Records that a device was lost while in use, with the reason the driver gave. */
export const rememberLost = (device: GPUDevice, error: GpuDeviceLost): void => void lostDevices.set(device, error)

/** Throws GpuDeviceLost (with the driver's reason) when the device was lost; work on it is void. */
export const checkDeviceAlive = (device: GPUDevice): void => {
  const lost = lostDevices.get(device)
  if (lost !== undefined) throw lost
}

/** The adapter of a device opened by openGpu (undefined for devices nobody described). */
export const adapterOf = (device: GPUDevice): GpuAdapterSummary | undefined => adapters.get(device)

/**
 * True on a software adapter. There every workgroup barrier switches between
 * the invocations' fibers on the CPU, so barrier-free kernel variants win.
 */
export const isSoftwareDevice = (device: GPUDevice): boolean => adapters.get(device)?.software ?? false


/** What names a software adapter (SwiftShader, Mesa's llvmpipe / lavapipe, any CPU adapter) in its name or info strings. */
export const SOFTWARE_ADAPTER_PATTERN = /swiftshader|llvmpipe|lavapipe|software|cpu/i

/** Where the Vulkan loader found an adapter's driver. */
export type AdapterDriver =
  /** the system's own drivers (the loader's search: a GPU's, or Mesa's where installed) */
  | "system"
  /** SwiftShader's ICD from Debian's chromium package */
  | "swiftshader"
  /** Mesa's lavapipe, fetched by scripts/lavapipe.sh or installed */
  | "lavapipe"
  /** the drivers VK_ICD_FILENAMES (or VK_DRIVER_FILES) names, as the user set it */
  | "user"

/** An adapter as listed before any is opened: enough to pick one. */
export interface AdapterCandidate {
  /** the name Dawn lists it by, e.g. "SwiftShader Device (Subzero)", "llvmpipe (LLVM 15.0.6, 256 bits)" */
  readonly name: string
  readonly backend: string
  readonly driver: AdapterDriver
  /** the ICD file(s) the loader was pointed at; undefined for the system's own search */
  readonly icd: string | undefined
  readonly software: boolean
}

/**
 * Which adapter to open: "auto" (a hardware adapter, else the preferred
 * software one), "hardware" or "software" only, or the first whose name
 * contains `name` (case-insensitive), in the order "auto" ranks them.
 */
export type AdapterChoice = "auto" | "hardware" | "software" | { readonly name: string }

/** CANOPY_ADAPTER's value as a choice: empty or unset is "auto"; anything but the three words (in any case) is part of a name. */
export const parseAdapterChoice = (raw: string | undefined): AdapterChoice => {
  const text = (raw ?? "").trim()
  const word = text.toLowerCase()
  if (word === "" || word === "auto") return "auto"
  if (word === "hardware" || word === "software") return word
  return { name: text }
}

export const describeChoice = (choice: AdapterChoice): string =>
  typeof choice === "string" ? choice : `an adapter whose name contains ${JSON.stringify(choice.name)}`

/**
 * Software adapters in the order "auto" and "software" prefer them, by name.
 * SwiftShader first, though lavapipe ran the attention and decode benchmarks
 * 7–36× faster on the same 2-core machine (README, "Software adapters"):
 * lavapipe binds at most 128 MiB per storage buffer (SwiftShader 1 GiB), so
 * the 7b and 13b shapes' embedding and output matrices do not fit it; it
 * compiles each pipeline several times slower (a kernel test file took 7×
 * SwiftShader's time on a cold shader cache); and every process that opens
 * it gets two warnings about its limits on stderr. CANOPY_ADAPTER=llvmpipe
 * picks it where those do not matter.
 */
export const SOFTWARE_PREFERENCE: ReadonlyArray<RegExp> = [/swiftshader/i, /llvmpipe|lavapipe/i]

/**
 * How much Canopy prefers an adapter (lower first): 0 for hardware, then the
 * software adapters in SOFTWARE_PREFERENCE's order, unknown ones last.
 */
export const adapterRank = (name: string, software: boolean): number => {
  if (!software) return 0
  const at = SOFTWARE_PREFERENCE.findIndex((p) => p.test(name))
  return 1 + (at < 0 ? SOFTWARE_PREFERENCE.length : at)
}

/**
 * The best rank an adapter of `driver` can have: any (0) for the system's or
 * the user's drivers, which may hold hardware; SwiftShader's and lavapipe's
 * their own. Drivers are asked in this order, and no further once the pick
 * so far ranks at least as well as any adapter a driver left could offer.
 */
export const driverRank = (driver: AdapterDriver): number =>
  driver === "system" || driver === "user" ? 0 : adapterRank(driver, true)

/** Candidates in the order Canopy prefers them: hardware as listed, then software by SOFTWARE_PREFERENCE (ties as listed). */
export const rankAdapters = (candidates: ReadonlyArray<AdapterCandidate>): ReadonlyArray<AdapterCandidate> => {
  const rank = (c: AdapterCandidate) => adapterRank(c.name, c.software)
  return candidates.map((c, i) => ({ c, i })).sort((a, b) => rank(a.c) - rank(b.c) || a.i - b.i).map(({ c }) => c)
}

/** The adapter `choice` picks among `candidates`, or undefined when none fits it. */
export const pickAdapter = (candidates: ReadonlyArray<AdapterCandidate>, choice: AdapterChoice): AdapterCandidate | undefined => {
  const ranked = rankAdapters(candidates)
  if (choice === "auto") return ranked[0]
  if (choice === "hardware") return ranked.find((c) => !c.software)
  if (choice === "software") return ranked.find((c) => c.software)
  const wanted = choice.name.toLowerCase()
  return ranked.find((c) => c.name.toLowerCase().includes(wanted))
}
