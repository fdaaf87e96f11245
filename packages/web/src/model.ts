/**
 * The model the page decodes with, and its engine: a synthetic model built
 * on the page's GPU (`tiny` by default), or a Hugging Face folder the user picked
 * (read from the picked Files; nothing is downloaded). Both are allocated
 * inside an out-of-memory error scope: a browser reports a GPU allocation it
 * cannot make there, not as an exception, and the page must say so.
 */
import { type LoadedModel, loadModelFromFiles, loadSyntheticModel, type MemoryFolder, type PresetName, TreeEngine } from "@canopy/runtime/browser"
import { Data } from "effect"
import { ENGINE_OPTIONS } from "./settings.ts"

export type ModelChoice =
  | { readonly kind: "synthetic"; readonly preset: PresetName; readonly seed: number }
  | { readonly kind: "files"; readonly files: MemoryFolder; readonly label: string }

/** The GPU could not allocate what a model or its engine needs. */
export class GpuOutOfMemory extends Data.TaggedError("GpuOutOfMemory")<{
  readonly what: string
  readonly detail: string
}> {
  override get message(): string {
    return `the GPU ran out of memory for ${this.what} (${this.detail})`
  }
}

/**
 * The picked files by name. A directory picker names each file by its path
 * under the chosen folder: only the folder's own files count (a model folder
 * keeps its files at the top), so `original/model.safetensors` is left out.
 */
export const pickedFolder = (picked: Iterable<File>): { readonly files: MemoryFolder; readonly label: string } => {
  const files = new Map<string, File>()
  let folder = ""
  for (const file of picked) {
    const parts = (file.webkitRelativePath || file.name).split("/")
    if (parts.length > 2) continue
    if (parts.length === 2) folder = parts[0]!
    files.set(file.name, file)
  }
  return { files, label: folder === "" ? `${files.size} picked files` : `folder ${folder}` }
}

const inMemoryScope = async <T>(device: GPUDevice, what: string, make: () => Promise<T>, release: (made: T) => void): Promise<T> => {
  device.pushErrorScope("out-of-memory")
  let made: T
  try {
    made = await make()
  } catch (e) {
    await device.popErrorScope()
    throw e
  }
  const error = await device.popErrorScope()
  if (error !== null) {
    release(made)
    throw new GpuOutOfMemory({ what, detail: error.message })
  }
  return made
}

export interface PageModel {
  readonly model: LoadedModel
  readonly engine: TreeEngine
  destroy(): void
}

export const openPageModel = async (
  device: GPUDevice,
  choice: ModelChoice,
  onProgress?: (loaded: number, total: number) => void
): Promise<PageModel> => {
  const model = await inMemoryScope(device, "the model's weights", () =>
    choice.kind === "synthetic"
      ? loadSyntheticModel(device, choice.preset, choice.seed)
      : loadModelFromFiles(device, choice.files, onProgress === undefined ? {} : { onProgress }), (m) => m.weights.destroy())
  try {
    const engine = await inMemoryScope(device, "the engine's KV cache and buffers", () => TreeEngine.create(device, model, ENGINE_OPTIONS),
      (e) => e.destroy())
    return {
      model,
      engine,
      destroy() {
        engine.destroy()
        model.weights.destroy()
      }
    }
  } catch (e) {
    model.weights.destroy()
    throw e
  }
}
