/**
 * Canopy for a browser page: the engine, synthetic models, models loaded
 * from files held in memory (a file or directory picker's Files, or bytes),
 * the tokenizers, and opening the page's WebGPU device. Nothing here imports
 * a Node module or Dawn (the `webgpu` package); the main entry adds what
 * needs them (model folders on disk, openGpu, the Effect services over them).
 */
export {
  BROWSER_WEBGPU_HINT, describeAdapter, type GpuAdapterSummary, GpuBufferTooLarge, type GpuCapabilities, GpuDeviceLost, type GpuHandle,
  GpuNoAdapter, GpuValidationError, type KvDtype, maxStorageBytes, openWebGpu, weightBytes, type WeightType
} from "@canopy/kernels"
export * from "./engine/index.ts"
export * from "./model/config.ts"
export * from "./model/errors.ts"
export * from "./model/inMemory.ts"
export type { LoadedModel, LoadModelOptions } from "./model/model.ts"
export * from "./model/presets.ts"
export * from "./model/tensors.ts"
export * from "./model/tokenizer.ts"
export type { ModelWeights } from "./model/weights.ts"
