/**
 * A model folder's tokenizer files, read from disk (Node.js): tokenizer.json
 * and, when present, tokenizer_config.json.
 */
import { join } from "node:path"
import { TokenizerError } from "./errors.ts"
import { MAX_CONFIG_BYTES, MAX_JSON_BYTES, readTextFile, statIfPresent } from "./files.ts"
import { type TextTokenizer, tokenizerFromJson } from "./tokenizer.ts"

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * Loads tokenizer.json (and tokenizer_config.json if the folder has one) from
 * a model folder; with `vocabSize`, its special tokens must be ids below it.
 * Only regular files are read (a FIFO or directory is a ModelFileError).
 */
export const loadTokenizer = async (dir: string, options: { readonly vocabSize?: number | undefined } = {}): Promise<TextTokenizer> => {
  const readJson = async (name: string, maxBytes: number): Promise<unknown> => {
    const text = await readTextFile(join(dir, name), maxBytes)
    try {
      return JSON.parse(text)
    } catch (e) {
      throw new TokenizerError({ reason: `${join(dir, name)} is not valid JSON: ${message(e)}` })
    }
  }
  const configFile = join(dir, "tokenizer_config.json")
  const tokenizerJson = await readJson("tokenizer.json", MAX_JSON_BYTES)
  const tokenizerConfig = (await statIfPresent(configFile)) === undefined ? {} : await readJson("tokenizer_config.json", MAX_CONFIG_BYTES)
  return tokenizerFromJson(tokenizerJson, tokenizerConfig, { vocabSize: options.vocabSize, configFile })
}
