/**
 * What the page tells the user when something fails: which of three kinds
 * it is (no WebGPU here, a model this adapter cannot hold, or input to
 * correct) and the typed error's own message, which names the field, file or
 * buffer at fault and the limit it broke.
 */
import { BROWSER_WEBGPU_HINT } from "@canopy/runtime/browser"

export type FailureKind = "no-webgpu" | "does-not-fit" | "input" | "fault"

export interface Failure {
  readonly kind: FailureKind
  readonly title: string
  readonly detail: string
}

const tagOf = (e: unknown): string => (typeof e === "object" && e !== null ? String((e as { _tag?: unknown })._tag ?? "") : "")

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const MiB = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** A buffer past the adapter's limits, said in the units a reader compares. */
const bufferTooLarge = (e: { label: string; askedBytes: number; allowedBytes: number }): string =>
  `its buffer ${e.label} needs ${MiB(e.askedBytes)}, and this adapter allows at most ${MiB(e.allowedBytes)} in one storage buffer ` +
  `(maxStorageBufferBindingSize, maxBufferSize). Choose a smaller model, or a browser and GPU with higher limits.`

const FIT = new Set(["GpuOutOfMemory", "KvCacheOutOfMemory", "InvalidEngineOptions", "EngineCapacityError"])
const INPUT = new Set([
  "FormError", "InvalidPromptTree", "InvalidSampling", "ContextTooLong", "ModelConfigError", "SafetensorsError", "UnsupportedDtype",
  "TensorShapeMismatch", "ModelFileError", "TokenizerError"
])

export const explainFailure = (e: unknown): Failure => {
  const tag = tagOf(e)
  if (tag === "GpuNoAdapter") {
    return { kind: "no-webgpu", title: "This browser gives the page no WebGPU adapter", detail: BROWSER_WEBGPU_HINT }
  }
  if (tag === "GpuBufferTooLarge") {
    return { kind: "does-not-fit", title: "The model does not fit this adapter", detail: bufferTooLarge(e as Parameters<typeof bufferTooLarge>[0]) }
  }
  if (FIT.has(tag)) return { kind: "does-not-fit", title: "The model does not fit this adapter", detail: messageOf(e) }
  if (INPUT.has(tag)) return { kind: "input", title: "Please correct this", detail: messageOf(e) }
  return { kind: "fault", title: "Decoding failed", detail: messageOf(e) }
}
