/**
 * Tokenizers: a Hugging Face tokenizer.json through @huggingface/tokenizers,
 * and a byte-level tokenizer (256 byte tokens + BOS + EOS) for synthetic models.
 * Platform-neutral: reading tokenizer.json from a folder is tokenizerFile.ts.
 */
import { Tokenizer } from "@huggingface/tokenizers"
import { TokenizerError } from "./errors.ts"

export interface TextTokenizer {
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosIds: ReadonlyArray<number>
  /** token ids of `text`, with the BOS token first when `addBos` (default true) and the tokenizer has one */
  encode(text: string, options?: { readonly addBos?: boolean }): Array<number>
  /** text of `ids`; special tokens are dropped */
  decode(ids: ReadonlyArray<number>): string
}

export const BYTE_BOS = 256
export const BYTE_EOS = 257
/** Byte ids, BOS and EOS; ids from here to a model's vocab size decode to nothing. */
export const BYTE_VOCAB = 258

export const byteTokenizer = (vocabSize = BYTE_VOCAB): TextTokenizer => ({
  vocabSize,
  bosId: BYTE_BOS,
  eosIds: [BYTE_EOS],
  encode: (text, options) => {
    const bytes = Array.from(new TextEncoder().encode(text))
    return options?.addBos === false ? bytes : [BYTE_BOS, ...bytes]
  },
  decode: (ids) => new TextDecoder().decode(Uint8Array.from(ids.filter((id) => id >= 0 && id < 256)))
})

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export interface TokenizerOptions {
  /** the model's vocabulary size: the special tokens' ids must lie below it */
  readonly vocabSize?: number | undefined
  /** how errors about tokenizer_config.json name it */
  readonly configFile?: string | undefined
}

/** A tokenizer from tokenizer.json (and tokenizer_config.json when present) objects. */
export const tokenizerFromJson = (tokenizerJson: unknown, tokenizerConfig: unknown = {}, options: TokenizerOptions = {}): TextTokenizer => {
  let tokenizer: Tokenizer
  try {
    tokenizer = new Tokenizer(tokenizerJson as object, tokenizerConfig as object)
  } catch (e) {
    throw new TokenizerError({ reason: `tokenizer.json could not be loaded: ${message(e)}` })
  }
  const config = (typeof tokenizerConfig === "object" && tokenizerConfig !== null ? tokenizerConfig : {}) as Record<string, unknown>
  const idOf = (field: string): number | undefined => {
    const v = config[field]
    const content = typeof v === "string" ? v : typeof v === "object" && v !== null ? (v as { content?: unknown }).content : undefined
    return typeof content === "string" ? tokenizer.token_to_id(content) : undefined
  }
  // The BOS id is written into every prompt and the EOS id compared with every
  // sampled token: one past the model's vocabulary would index past its embedding.
  const checked = (field: string): number | undefined => {
    const id = idOf(field)
    if (id !== undefined && options.vocabSize !== undefined && id >= options.vocabSize) {
      const v = config[field]
      const token = typeof v === "string" ? v : (v as { content: string }).content
      throw new TokenizerError({
        field,
        reason: `${options.configFile ?? "tokenizer_config.json"}: ${field} ${JSON.stringify(token)} is token id ${id}, ` +
          `outside the model's vocabulary (vocab_size ${options.vocabSize})`
      })
    }
    return id
  }
  const bosId = checked("bos_token")
  const eos = checked("eos_token")
  return {
    vocabSize: tokenizer.get_vocab(true).size,
    bosId,
    eosIds: eos === undefined ? [] : [eos],
    encode: (text, options) => {
      try {
        const ids = tokenizer.encode(text, { add_special_tokens: false }).ids
        return options?.addBos !== false && bosId !== undefined ? [bosId, ...ids] : ids
      } catch (e) {
        throw new TokenizerError({ reason: `could not encode text: ${message(e)}` })
      }
    },
    // The library refuses an empty list; streaming decodes one before a sample's first token.
    decode: (ids) => (ids.length === 0 ? "" : tokenizer.decode([...ids], { skip_special_tokens: true }))
  }
}
