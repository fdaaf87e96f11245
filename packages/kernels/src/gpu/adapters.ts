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

