/**
 * Buffers and pipelines with validation turned into typed errors (error
 * scopes), never console noise.
 */
import { GpuBufferTooLarge, GpuValidationError, ShaderCompileError } from "./errors.ts"

/** Identity tag for WGSL template literals (editors highlight `wgsl\`...\``). */
export const wgsl = (strings: TemplateStringsArray, ...values: ReadonlyArray<string | number>): string =>
  String.raw({ raw: strings }, ...values)

/** Creates a compute pipeline; a WGSL error becomes `ShaderCompileError` naming the kernel. */
export const createComputePipeline = async (
  device: GPUDevice,
  kernel: string,
  code: string,
  constants?: Record<string, number>
): Promise<GPUComputePipeline> => {
  device.pushErrorScope("validation")
  const module = device.createShaderModule({ label: kernel, code })
  const info = await module.getCompilationInfo()
  const errors = info.messages.filter((m) => m.type === "error")
  const moduleError = await device.popErrorScope()
  if (errors.length > 0 || moduleError !== null) {
    const text = errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("\n") || moduleError!.message
    throw new ShaderCompileError({ kernel, wgslMessage: text })
  }
  device.pushErrorScope("validation")
  let pipeline: GPUComputePipeline
  try {
    pipeline = await device.createComputePipelineAsync({
      label: kernel,
      layout: "auto",
      compute: { module, entryPoint: "main", ...(constants ? { constants } : {}) }
    })
  } catch (e) {
    await device.popErrorScope()
    throw new ShaderCompileError({ kernel, wgslMessage: e instanceof Error ? e.message : String(e) })
  }
  const pipelineError = await device.popErrorScope()
  if (pipelineError !== null) throw new ShaderCompileError({ kernel, wgslMessage: pipelineError.message })
  return pipeline
}

/** The largest buffer a storage binding may see on this device. */
export const maxStorageBytes = (device: GPUDevice): number =>
  Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize)

/** Creates a storage buffer after checking its size against the device's limits. */
export const createStorageBuffer = (
  device: GPUDevice,
  label: string,
  bytes: number,
  extraUsage: number = 0
): GPUBuffer => {
  const allowed = maxStorageBytes(device)
  const size = Math.max(16, Math.ceil(bytes / 16) * 16)
  if (size > allowed) throw new GpuBufferTooLarge({ label, askedBytes: bytes, allowedBytes: allowed })
  return device.createBuffer({
    label,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage
  })
}

/**
 * A storage buffer that may be larger than one binding (up to the device's
 * maxBufferSize); it is bound in windows (pool shards).
 */
export const createLargeStorageBuffer = (device: GPUDevice, label: string, bytes: number): GPUBuffer => {
  const size = Math.max(16, Math.ceil(bytes / 16) * 16)
  if (size > device.limits.maxBufferSize) {
    throw new GpuBufferTooLarge({ label, askedBytes: bytes, allowedBytes: device.limits.maxBufferSize })
  }
  return device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC })
}

/** A storage buffer holding `data`. */
export const uploadBuffer = (
  device: GPUDevice,
  label: string,
  data: Float32Array | Uint32Array | Int32Array
): GPUBuffer => {
  const buffer = createStorageBuffer(device, label, data.byteLength)
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
  return buffer
}

/** A uniform buffer holding `data` (u32/f32 words). */
export const uniformBuffer = (device: GPUDevice, label: string, data: Uint32Array): GPUBuffer => {
  const buffer = device.createBuffer({
    label,
    size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
  })
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
  return buffer
}

/** Copies `bytes` of `source` back to the CPU. */
export const readBuffer = async (device: GPUDevice, source: GPUBuffer, bytes = source.size): Promise<ArrayBuffer> => {
  const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ })
  try {
    const encoder = device.createCommandEncoder()
    encoder.copyBufferToBuffer(source, 0, staging, 0, bytes)
    device.queue.submit([encoder.finish()])
    await staging.mapAsync(GPUMapMode.READ)
    return staging.getMappedRange().slice(0)
  } finally {
    staging.destroy()
  }
}

export const readFloat32 = async (device: GPUDevice, source: GPUBuffer, count: number): Promise<Float32Array> =>
  new Float32Array(await readBuffer(device, source, count * 4))

export const readUint32 = async (device: GPUDevice, source: GPUBuffer, count: number): Promise<Uint32Array> =>
  new Uint32Array(await readBuffer(device, source, count * 4))

/** Runs `body` inside a validation error scope; a reported error becomes `GpuValidationError`. */
export const withValidation = async <A>(device: GPUDevice, operation: string, body: () => A): Promise<A> => {
  device.pushErrorScope("validation")
  const result = body()
  const error = await device.popErrorScope()
  if (error !== null) throw new GpuValidationError({ operation, wgpuMessage: error.message })
  return result
}

/** Binds buffers to bindings 0..n-1 of group 0 of `pipeline`. */
export const bindBuffers = (
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: ReadonlyArray<GPUBuffer>,
  label?: string
): GPUBindGroup =>
  device.createBindGroup({
    ...(label ? { label } : {}),
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } }))
  })
