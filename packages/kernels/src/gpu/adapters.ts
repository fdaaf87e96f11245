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

const adapters = new WeakMap<GPUDevice, GpuAdapterSummary>()
const lostDevices = new WeakMap<GPUDevice, GpuDeviceLost>()

/**
 * Tells Canopy which adapter a device came from, so kernels can tune for it.
 * openGpu does this; a page that opens its own device may do it too.
 */
export const rememberAdapter = (device: GPUDevice, adapter: GpuAdapterSummary): void => void adapters.set(device, adapter)

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

