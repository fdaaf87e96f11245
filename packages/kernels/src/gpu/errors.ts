/**
 * Typed GPU errors. Each carries the facts a user needs to act on it.
 */
import { Data } from "effect"

/** No WebGPU adapter at all: neither hardware nor the software driver. */
export class GpuNoAdapter extends Data.TaggedError("GpuNoAdapter")<{
  readonly tried: ReadonlyArray<string>
  readonly hint: string
}> {
  override get message(): string {
    return `no WebGPU adapter found (tried: ${this.tried.join("; ")}); ${this.hint}`
  }
}

/** The device was lost while in use. */
export class GpuDeviceLost extends Data.TaggedError("GpuDeviceLost")<{
  readonly reason: string
  readonly message: string
}> {}

/** A WGSL module failed to compile or a pipeline failed to build. */
export class ShaderCompileError extends Data.TaggedError("ShaderCompileError")<{
  readonly kernel: string
  readonly wgslMessage: string
}> {
  override get message(): string {
    return `kernel ${this.kernel} failed to compile: ${this.wgslMessage}`
  }
}

/** A buffer larger than the device allows. */
export class GpuBufferTooLarge extends Data.TaggedError("GpuBufferTooLarge")<{
  readonly label: string
  readonly askedBytes: number
  readonly allowedBytes: number
}> {
  override get message(): string {
    return `buffer ${this.label} needs ${this.askedBytes} bytes; the device allows ${this.allowedBytes}`
  }
}

/** Any other validation error the device reported for an operation. */
export class GpuValidationError extends Data.TaggedError("GpuValidationError")<{
  readonly operation: string
  readonly wgpuMessage: string
}> {
  override get message(): string {
    return `${this.operation}: ${this.wgpuMessage}`
  }
}

export type GpuError = GpuNoAdapter | GpuDeviceLost | ShaderCompileError | GpuBufferTooLarge | GpuValidationError
