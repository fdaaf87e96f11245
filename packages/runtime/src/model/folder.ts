/**
 * A Hugging Face model folder, checked before anything is allocated for it or
 * sent to the GPU: the folder and its files exist and are regular files,
 * config.json parses within CONFIG_LIMITS, the safetensors headers are sound,
 * and config.json agrees with the tensors present.
 */
import { join } from "node:path"
import { type ModelConfig, parseModelConfig } from "./config.ts"
import { ModelFileError } from "./errors.ts"
import { kindOf, MAX_CONFIG_BYTES, readJsonFile, requireRegularFile, statIfPresent } from "./files.ts"
import { INDEX_FILE, openTensorSource, SINGLE_FILE, type TensorSource } from "./safetensors.ts"
import { parseConfigForTensors } from "./tensors.ts"

export const CONFIG_FILE = "config.json"
export const TOKENIZER_FILE = "tokenizer.json"
const WEIGHTS = `the weights (${SINGLE_FILE} or ${INDEX_FILE})`

const listed = (items: ReadonlyArray<string>): string =>
  items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`

/**
 * Checks that `dir` is a folder holding config.json, the weights (the index
 * when there is one, else model.safetensors) and, with `tokenizer`,
 * tokenizer.json, each a regular file. Nothing is opened: every missing file
 * is named in one ModelFileError.
 */
export const checkModelFolder = async (dir: string, options: { readonly tokenizer: boolean }): Promise<void> => {
  const folder = await statIfPresent(dir)
  if (folder === undefined) throw new ModelFileError({ file: dir, reason: "model folder does not exist" })
  if (!folder.isDirectory()) throw new ModelFileError({ file: dir, reason: `is ${kindOf(folder)}, not a model folder` })
  const names = [CONFIG_FILE, INDEX_FILE, SINGLE_FILE, ...(options.tokenizer ? [TOKENIZER_FILE] : [])]
  const stats = new Map<string, Awaited<ReturnType<typeof statIfPresent>>>()
  for (const name of names) stats.set(name, await statIfPresent(join(dir, name)))
  const weights = stats.get(INDEX_FILE) !== undefined ? INDEX_FILE : stats.get(SINGLE_FILE) !== undefined ? SINGLE_FILE : undefined
  const missing: Array<string> = []
  if (stats.get(CONFIG_FILE) === undefined) missing.push(CONFIG_FILE)
  if (weights === undefined) missing.push(WEIGHTS)
  if (options.tokenizer && stats.get(TOKENIZER_FILE) === undefined) missing.push(TOKENIZER_FILE)
  if (missing.length > 0) throw new ModelFileError({ file: dir, reason: `model folder is missing ${listed(missing)}`, missing })
  for (const name of [CONFIG_FILE, weights!, ...(options.tokenizer ? [TOKENIZER_FILE] : [])]) {
    requireRegularFile(join(dir, name), stats.get(name)!)
  }
}

/** Reads and checks config.json (values in errors quoted as written). */
export const readConfig = async (dir: string): Promise<ModelConfig> => {
  const { text, json } = await readJsonFile(join(dir, CONFIG_FILE), MAX_CONFIG_BYTES)
  return parseModelConfig(json, { text })
}

/** A checked folder: its config and its open tensors (close them when done). */
export interface ModelFolder {
  readonly config: ModelConfig
  readonly source: TensorSource
}

/**
 * Checks `dir` (see checkModelFolder), reads config.json and the safetensors
 * headers, and checks the config against the tensors (field by field, then
 * every tensor's shape). No tensor data is read.
 */
export const openModelFolder = async (dir: string, options: { readonly tokenizer: boolean } = { tokenizer: false }): Promise<ModelFolder> => {
  await checkModelFolder(dir, options)
  const { text, json } = await readJsonFile(join(dir, CONFIG_FILE), MAX_CONFIG_BYTES)
  const source = await openTensorSource(dir)
  try {
    return { config: parseConfigForTensors(json, text, source.tensors), source }
  } catch (e) {
    await source.close()
    throw e
  }
}
