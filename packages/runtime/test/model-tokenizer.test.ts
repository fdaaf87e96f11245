import { describe, expect, it } from "vitest"
import { TokenizerError } from "../src/model/errors.ts"
import { BYTE_BOS, BYTE_EOS, byteTokenizer, tokenizerFromJson } from "../src/model/tokenizer.ts"
import { tinyBpe } from "./tinyBpe.ts"

describe("tokenizers", () => {
  it("byte tokenizer round-trips UTF-8 text with BOS first", () => {
    const t = byteTokenizer(260)
    const text = "héllo, wörld ✓"
    const ids = t.encode(text)
    expect(ids[0]).toBe(BYTE_BOS)
    expect(ids.length).toBe(1 + new TextEncoder().encode(text).length)
    expect(t.decode([...ids, BYTE_EOS, 259])).toBe(text)
    expect(t.encode("a", { addBos: false })).toEqual([97])
    expect(t.eosIds).toEqual([BYTE_EOS])
  })

  it("loads a tokenizer.json with @huggingface/tokenizers", () => {
    const t = tokenizerFromJson(tinyBpe, { bos_token: "<s>", eos_token: { content: "</s>" } })
    expect(t.bosId).toBe(0)
    expect(t.eosIds).toEqual([1])
    const ids = t.encode("abc ab")
    expect(ids[0]).toBe(0)
    expect(ids).toContain(7)
    expect(t.decode(ids)).toBe("abc ab")
  })

  it("refuses special tokens whose ids lie outside the model's vocabulary", () => {
    const e = (() => {
      try {
        tokenizerFromJson(tinyBpe, { bos_token: "<s>", eos_token: "Ġa" }, { vocabSize: 9 })
      } catch (e) {
        return e
      }
    })()
    expect(e).toBeInstanceOf(TokenizerError)
    expect(e).toMatchObject({ field: "eos_token" })
    expect((e as TokenizerError).message).toBe("tokenizer_config.json: eos_token \"Ġa\" is token id 9, outside the model's vocabulary (vocab_size 9)")
    expect(tokenizerFromJson(tinyBpe, { bos_token: "<s>", eos_token: "Ġa" }, { vocabSize: 10 }).eosIds).toEqual([9])
  })

  it("reports a broken tokenizer.json as TokenizerError", () => {
    expect(() => tokenizerFromJson({ model: { type: "NoSuchModel" } })).toThrow(TokenizerError)
  })
})
