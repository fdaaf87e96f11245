/**
 * Models that need no file system, so a browser page can load them as Node
 * does: synthesized from a preset and a seed, or read from a Hugging Face
 * folder's files held in memory (the Files a page's picker gives, or bytes).
 * A folder in memory gets the checks a folder on disk gets, before the GPU
 * is touched: the files present, config.json, every safetensors header, the
 * config against the tensors, and the tokenizer.
 */
import type { WeightType } from "@canopy/kernels"
import type { ModelConfig } from "./config.ts"
import { ModelFileError } from "./errors.ts"
import { MAX_CONFIG_BYTES, MAX_JSON_BYTES } from "./fileLimits.ts"
import type { ModelFolder } from "./folder.ts"
import type { LoadedModel, LoadModelOptions } from "./model.ts"
import { type PresetName, syntheticConfig } from "./presets.ts"
import { type ByteSource, type FolderFiles, INDEX_FILE, openFolderTensors, SINGLE_FILE } from "./safetensorsFormat.ts"
import { parseConfigForTensors } from "./tensors.ts"
import { byteTokenizer, type TextTokenizer, tokenizerFromJson } from "./tokenizer.ts"
import { synthesizeWeights, uploadFolder } from "./weights.ts"

/** One file of a model folder: a Blob (a File from a picker, read a range at a time) or its bytes. */
export type MemoryFile = Blob | ArrayBuffer | Uint8Array

/** A model folder's files by name: config.json, model.safetensors or the index and its shards, tokenizer.json, tokenizer_config.json. */
export type MemoryFolder = ReadonlyMap<string, MemoryFile>

/** How messages name a folder held in memory. */
export const MEMORY_FOLDER = "the chosen model files"

const sizeOf = (file: MemoryFile): number => (file instanceof Blob ? file.size : file.byteLength)

const bytesOf = (file: MemoryFile): ByteSource => ({
  size: sizeOf(file),
  read: async (position, length) => {
    const end = Math.min(position + length, sizeOf(file))
    if (file instanceof Blob) return new Uint8Array(await file.slice(position, end).arrayBuffer())
    // A copy: the decoders view it at offset 0, whatever the alignment of the range.
    return (file instanceof Uint8Array ? file : new Uint8Array(file)).slice(position, end)
  },
  close: async () => {}
})

const fileIn = (files: MemoryFolder, name: string): MemoryFile => {
  const file = files.get(name)
  if (file === undefined) throw new ModelFileError({ file: name, reason: `is not among ${MEMORY_FOLDER}` })
  return file
}

/** A JSON file's text (for quoting values as written) and its value; refused above `maxBytes`. */
const readJson = async (files: MemoryFolder, name: string, maxBytes: number): Promise<{ readonly text: string; readonly json: unknown }> => {
  const file = fileIn(files, name)
  const size = sizeOf(file)
  if (size > maxBytes) throw new ModelFileError({ file: name, reason: `is ${size} bytes, above the ${maxBytes}-byte limit for this file` })
  const text = new TextDecoder().decode(await bytesOf(file).read(0, size))
  try {
    return { text, json: JSON.parse(text) }
  } catch (e) {
    throw new ModelFileError({ file: name, reason: `not valid JSON (${e instanceof Error ? e.message : String(e)})` })
  }
}

const folderFiles = (files: MemoryFolder): FolderFiles => ({
  pathOf: (name) => name,
  has: async (name) => files.has(name),
  open: async (name) => bytesOf(fileIn(files, name)),
  readJson: async (name, maxBytes) => (await readJson(files, name, maxBytes)).json
})

/** Every file the folder lacks, named in one ModelFileError. */
const checkPresent = (files: MemoryFolder): void => {
  const missing = [
    ...(files.has("config.json") ? [] : ["config.json"]),
    ...(files.has(INDEX_FILE) || files.has(SINGLE_FILE) ? [] : [`the weights (${SINGLE_FILE} or ${INDEX_FILE})`]),
    ...(files.has("tokenizer.json") ? [] : ["tokenizer.json"])
  ]
  if (missing.length > 0) throw new ModelFileError({ file: MEMORY_FOLDER, reason: `lack ${missing.join(", ")}`, missing })
}

/** Checks a folder held in memory (see the top of this file); close the folder's source when done. */
export const openMemoryFolder = async (files: MemoryFolder): Promise<{ readonly folder: ModelFolder; readonly tokenizer: TextTokenizer }> => {
  checkPresent(files)
  const { text, json } = await readJson(files, "config.json", MAX_CONFIG_BYTES)
  const source = await openFolderTensors(MEMORY_FOLDER, folderFiles(files))
  try {
    const config = parseConfigForTensors(json, text, source.tensors)
    const tokenizerJson = (await readJson(files, "tokenizer.json", MAX_JSON_BYTES)).json
    const tokenizerConfig = files.has("tokenizer_config.json") ? (await readJson(files, "tokenizer_config.json", MAX_CONFIG_BYTES)).json : {}
    const tokenizer = tokenizerFromJson(tokenizerJson, tokenizerConfig, { vocabSize: config.vocabSize, configFile: "tokenizer_config.json" })
    return { folder: { config, source }, tokenizer }
  } catch (e) {
    await source.close()
    throw e
  }
}

/** A Hugging Face model from files held in memory, checked (openMemoryFolder) and uploaded one tensor at a time. */
export const loadModelFromFiles = async (device: GPUDevice, files: MemoryFolder, options: LoadModelOptions = {}): Promise<LoadedModel> => {
  const { folder, tokenizer } = await openMemoryFolder(files)
  try {
    const weights = await uploadFolder(device, folder, options.onProgress)
    return { config: folder.config, weights, tokenizer }
  } finally {
    await folder.source.close()
  }
}

/** A synthetic model: a preset (or any config) with weights generated on the GPU from `seed` as `dtype`, and the byte tokenizer. */
export const loadSyntheticModel = async (
  device: GPUDevice, model: PresetName | ModelConfig, seed: number, dtype: WeightType = "f32"
): Promise<LoadedModel> => {
  const config = syntheticConfig(model)
  const weights = await synthesizeWeights(device, config, seed, dtype)
  // Synthetic models speak bytes: ids past the byte tokenizer's decode to nothing.
  return { config, weights, tokenizer: byteTokenizer(config.vocabSize) }
}
