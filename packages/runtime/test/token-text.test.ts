/**
 * The text each streamed token adds: pieces concatenate to the decoded text,
 * and no piece shows half a UTF-8 character (it waits for the token that
 * completes it).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { TokenText } from "../src/engine/tokenText.ts"
import { byteTokenizer } from "../src/model/tokenizer.ts"

const stream = (tokens: ReadonlyArray<number>): Array<string> => {
  const text = new TokenText(byteTokenizer())
  const pieces: Array<string> = []
  for (let i = 1; i <= tokens.length; i++) pieces.push(text.next(tokens.slice(0, i)))
  return pieces
}

describe("TokenText", () => {
  it("pieces concatenate to the text and never split a character, on random Unicode text (one token per byte)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (text) => {
        const bytes = Array.from(new TextEncoder().encode(text))
        const pieces = stream(bytes)
        expect(pieces.join("")).toBe(text)
        for (const p of pieces) expect(p.includes("\uFFFD")).toBe(false)
      }),
      { numRuns: 300 }
    )
  })

  it("holds the first bytes of a four-byte character until its last byte", () => {
    const bytes = Array.from(new TextEncoder().encode("a🌲b"))
    expect(stream(bytes)).toEqual(["a", "", "", "", "🌲", "b"])
  })

  it("shows bytes that are not UTF-8 as U+FFFD once a later token makes them final", () => {
    expect(stream([0x61, 0xff, 0x62])).toEqual(["a", "", "\uFFFDb"])
  })
})
