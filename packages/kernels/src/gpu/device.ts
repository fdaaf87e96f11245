/**
 * Opening a WebGPU device in Node.js through Dawn (the `webgpu` package).
 *
 * Every Vulkan driver Canopy finds (the system's, SwiftShader from Debian's
 * `chromium` package, lavapipe from scripts/lavapipe.sh; or only those
 * VK_ICD_FILENAMES names, where the user set it) lists its adapters; the
 * choice (CANOPY_ADAPTER: auto, hardware, software or part of a name) picks
 * one, hardware first, and the device opens on an instance that sees that
 * adapter's driver only. The Dawn instance must outlive the device (a dropped
 * instance can crash the process), so it is kept on the returned handle.
 *
 * Node's modules are fetched when openGpu runs (process.getBuiltinModule),
 * not imported: the kernels' barrel, this file included, must load in a
 * browser page, where bundlers cannot resolve `node:` modules or Dawn.
 */
import {
  type AdapterCandidate, type AdapterChoice, adapterRank, describeChoice, driverRank, type GpuAdapterSummary, type GpuCapabilities,
  type GpuKernelLimits, parseAdapterChoice, pickAdapter, rankAdapters
} from "./adapters.ts"
import { listDriverAdapters, requestNamedAdapter } from "./dawnAdapters.ts"
import { GpuNoAdapter } from "./errors.ts"
import { describeDriver, type VulkanDriver, vulkanDrivers } from "./vulkanDrivers.ts"
import { DEFAULT_FEATURES, openAdapterDevice, summarizeAdapter } from "./webgpu.ts"

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
  /**
   * Which adapter (default: CANOPY_ADAPTER's, else "auto"): "auto" (hardware,
   * then the preferred software adapter), "hardware" or "software" only, or
   * `{ name }`, the first adapter whose name contains it (case-insensitive)
   */
  readonly adapter?: AdapterChoice
  /** Features requested where the adapter has them. */
  readonly wantFeatures?: ReadonlyArray<string>
}

export { SWIFTSHADER_ICD_PATHS } from "./vulkanDrivers.ts"

export const INSTALL_HINT =
  "install a software Vulkan driver and loader: `apt-get install -y chromium-common libvulkan1` " +
  "(Canopy finds SwiftShader's ICD at /usr/lib/chromium/vk_swiftshader_icd.json by itself, and lavapipe " +
  "where scripts/lavapipe.sh put it), or run on a machine with a GPU and its Vulkan driver"

/** The choice OpenGpuOptions.adapter falls back to: CANOPY_ADAPTER, else "auto". */
export const adapterChoiceFromEnv = (): AdapterChoice => parseAdapterChoice(process.env["CANOPY_ADAPTER"])

interface Found {
  readonly candidate: AdapterCandidate
  readonly driver: VulkanDriver
}

/**
 * The adapters the drivers offer, each once (the first driver to list a name
 * keeps it). Unless `every`, drivers are asked in driverRank order only until
 * the pick can no longer change: a driver that is never asked costs nothing,
 * and lavapipe, once asked, prints two warnings about its limits on stderr.
 * "hardware" asks the system's drivers even without a GPU device node (to say
 * so when they have none) and never the software ones.
 */
const findAdapters = async (choice: AdapterChoice, every = false): Promise<{ readonly found: ReadonlyArray<Found>; readonly drivers: ReadonlyArray<VulkanDriver> }> => {
  const drivers = [...vulkanDrivers(choice === "hardware")]
    .filter((d) => choice !== "hardware" || driverRank(d.kind) === 0)
    .sort((a, b) => driverRank(a.kind) - driverRank(b.kind))
  const found: Array<Found> = []
  for (const [i, driver] of drivers.entries()) {
    for (const candidate of await listDriverAdapters(driver)) {
      if (!found.some((f) => f.candidate.name === candidate.name)) found.push({ candidate, driver })
    }
    const picked = pickAdapter(found.map((f) => f.candidate), choice)
    const next = drivers[i + 1]
    if (!every && picked !== undefined && (next === undefined || adapterRank(picked.name, picked.software) <= driverRank(next.kind))) {
      return { found, drivers: drivers.slice(0, i + 1) }
    }
  }
  return { found, drivers }
}

const noAdapter = (choice: AdapterChoice, found: ReadonlyArray<Found>, drivers: ReadonlyArray<VulkanDriver>): GpuNoAdapter => {
  const where = drivers.length === 0 ? ["no Vulkan driver found"] : drivers.map(describeDriver)
  if (found.length === 0) return new GpuNoAdapter({ tried: where, hint: INSTALL_HINT })
  const names = found.map(({ candidate: c }) => `${JSON.stringify(c.name)}${c.software ? " (software)" : ""}`).join(", ")
  return new GpuNoAdapter({
    tried: [`${describeChoice(choice)} (CANOPY_ADAPTER or the adapter option), among ${where.join("; ")}`],
    hint: `the adapters here are ${names}: set CANOPY_ADAPTER to part of one of these names, or to auto, hardware or software`
  })
}

/**
 * Opens a device on the adapter `options.adapter` (else CANOPY_ADAPTER, else
 * "auto") picks among those every Vulkan driver offers (see pickAdapter).
 * Rejects with `GpuNoAdapter`: saying what to install when there is no
 * adapter at all, or naming the adapters there are when none fits the choice.
 */
export const openGpu = async (options: OpenGpuOptions = {}): Promise<GpuHandle> => {
  const choice = options.adapter ?? adapterChoiceFromEnv()
  const { found, drivers } = await findAdapters(choice)
  const picked = pickAdapter(found.map((f) => f.candidate), choice)
  const from = found.find((f) => f.candidate === picked)
  if (from === undefined) throw noAdapter(choice, found, drivers)
  const { instance, adapter } = await requestNamedAdapter(from.candidate, from.driver)
  if (adapter === null) throw new GpuNoAdapter({ tried: [`${JSON.stringify(from.candidate.name)} from ${describeDriver(from.driver)}`], hint: INSTALL_HINT })
  return openAdapterDevice(instance, adapter, options.wantFeatures ?? DEFAULT_FEATURES)
}

/** One adapter as `canopy adapter` shows it: what it offers (not yet a device), and whether openGpu would pick it. */
export interface ListedAdapter {
  readonly candidate: AdapterCandidate
  /** undefined where Dawn listed it but would not hand it out */
  readonly summary: GpuAdapterSummary | undefined
  readonly features: ReadonlyArray<string>
  readonly limits: Partial<GpuKernelLimits>
  readonly picked: boolean
}

const KERNEL_LIMITS: ReadonlyArray<keyof GpuKernelLimits> = [
  "maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX", "maxComputeWorkgroupsPerDimension", "maxStorageBuffersPerShaderStage", "minStorageBufferOffsetAlignment"
]

/**
 * Every adapter found, in the order Canopy ranks them, each asked for its
 * features and limits, with the one `choice` picks marked. Opens no device.
 */
export const listAdapters = async (choice: AdapterChoice = adapterChoiceFromEnv()): Promise<ReadonlyArray<ListedAdapter>> => {
  const { found } = await findAdapters(choice, true)
  const picked = pickAdapter(found.map((f) => f.candidate), choice)
  const listed: Array<ListedAdapter> = []
  for (const candidate of rankAdapters(found.map((f) => f.candidate))) {
    const { adapter } = await requestNamedAdapter(candidate, found.find((f) => f.candidate === candidate)!.driver)
    const limits: Partial<Record<keyof GpuKernelLimits, number>> = {}
    for (const key of KERNEL_LIMITS) if (adapter !== null) limits[key] = adapter.limits[key]
    listed.push({
      candidate,
      summary: adapter === null ? undefined : summarizeAdapter(adapter.info),
      features: adapter === null ? [] : [...adapter.features].sort(),
      limits,
      picked: candidate === picked
    })
  }
  return listed
}

export const describeAdapter = (a: GpuAdapterSummary): string =>
  [a.vendor, a.architecture, a.device, a.description].filter((s) => s.length > 0).join(" / ") +
  (a.software ? " (software)" : "")
