/**
 * Filling a model's weight buffers (weightBuffers.ts): from a safetensors
 * folder, its bytes copied to the GPU as they are stored; from host arrays;
 * or synthesized on the GPU (synthesize.ts). Platform-neutral, for a browser
 * page too: reading a folder from disk is folderWeights.ts.
 */
import { packWeights, type WeightType } from "@canopy/kernels"
import { BufferStream } from "./bufferStream.ts"
import type { ModelConfig } from "./config.ts"
import { decodeToF32, weightTypeOfDtype } from "./dtype.ts"
import type { ModelFolder } from "./folder.ts"
import type { TensorInfo, TensorSource } from "./safetensorsFormat.ts"
import { checkShapes, elementCount, isMatrix, tensorSpecs } from "./tensors.ts"
import { allocateWeights, type ModelWeights, type WeightTarget } from "./weightBuffers.ts"

export { allocateWeights, type LayerWeights, type ModelWeights, type WeightTarget } from "./weightBuffers.ts"
export { synthesizeHostWeights, synthesizeWeights } from "./synthesize.ts"

/** Host tensors by Hugging Face name (f32 or f64 values). */
export type HostWeights = ReadonlyMap<string, ArrayLike<number>>

/**
 * Writes a target's host tensors one after the other, each packed as the
 * target's type on its own (no joined copy): a 16-bit tensor of odd length
 * ends mid-word, and the next starts there (BufferStream).
 */
const writeHostTarget = (device: GPUDevice, host: HostWeights, { buffer, parts, type }: WeightTarget): void => {
  const stream = new BufferStream(device, buffer)
  for (const spec of parts) {
    const values = host.get(spec.name)!
    const packed = packWeights(type, values)
    stream.push(new Uint8Array(packed.buffer, packed.byteOffset, values.length * (type === "f32" ? 4 : 2)))
  }
  stream.end()
}

/** Uploads host tensors (checked against the config first), matrices rounded to and held as `weightType`. */
export const uploadWeights = (device: GPUDevice, c: ModelConfig, host: HostWeights, weightType: WeightType = "f32"): ModelWeights => {
  const shapes = new Map<string, ReadonlyArray<number>>()
  for (const spec of tensorSpecs(c)) {
    const values = host.get(spec.name)
    if (values !== undefined) shapes.set(spec.name, values.length === elementCount(spec.shape) ? spec.shape : [values.length])
  }
  checkShapes(c, shapes)
  const { weights, targets } = allocateWeights(device, c, weightType)
  for (const target of targets) writeHostTarget(device, host, target)
  return weights
}

/**
 * The type a folder's matrices are held as: the dtype they are all stored in
 * (copied to the GPU as they are), or f32 where they mix dtypes.
 */
export const folderWeightType = (c: ModelConfig, tensors: ReadonlyMap<string, TensorInfo>): WeightType => {
  const dtypes = new Set(tensorSpecs(c).filter(isMatrix).map((spec) => tensors.get(spec.name)!.dtype))
  return dtypes.size === 1 ? weightTypeOfDtype([...dtypes][0]!) : "f32"
}

/** Bytes read from disk and written to the GPU at a time: host memory holds one chunk, not a tensor or the model. */
export const LOAD_CHUNK_BYTES = 64 * 2 ** 20

/** After each tensor: how many of how many are on the GPU. */
export type LoadProgress = (loaded: number, total: number) => void

/**
 * Streams one target's tensors from disk: a tensor stored in the target's
 * type goes to the GPU byte for byte, in chunks; anything else (norms and
 * biases stored in 16 bits, matrices of a folder that mixes dtypes) is
 * widened to f32 chunk by chunk.
 */
const streamTarget = async (
  device: GPUDevice, source: TensorSource, target: WeightTarget, chunkBytes: number, onTensor: () => void
): Promise<void> => {
  const stream = new BufferStream(device, target.buffer)
  for (const spec of target.parts) {
    const info = source.tensors.get(spec.name)!
    const asStored = weightTypeOfDtype(info.dtype) === target.type
    const size = info.end - info.begin
    for (let at = 0; at < size; at += chunkBytes) {
      const bytes = await source.readBytes(spec.name, at, Math.min(chunkBytes, size - at))
      stream.push(asStored ? bytes : new Uint8Array(decodeToF32(info.dtype, bytes).buffer))
    }
    onTensor()
  }
  stream.end()
}

/**
 * Uploads the tensors of a checked folder (see openModelFolder); the caller
 * closes its source. f32, f16 and bf16 matrices stay as they are stored, their
 * bytes copied from the file to the GPU unchanged (see folderWeightType),
 * `chunkBytes` (a multiple of 4) at a time.
 */
export const uploadFolder = async (
  device: GPUDevice, { config, source }: ModelFolder, onProgress?: LoadProgress, chunkBytes = LOAD_CHUNK_BYTES
): Promise<ModelWeights> => {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 4 || chunkBytes % 4 !== 0) {
    throw new RangeError(`chunkBytes must be a positive multiple of 4, got ${chunkBytes}`)
  }
  const { weights, targets } = allocateWeights(device, config, folderWeightType(config, source.tensors))
  const total = targets.reduce((n, t) => n + t.parts.length, 0)
  let loaded = 0
  try {
    for (const target of targets) await streamTarget(device, source, target, chunkBytes, () => onProgress?.(++loaded, total))
  } catch (e) {
    weights.destroy()
    throw e
  }
  return weights
}
