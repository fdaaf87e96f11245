/**
 * The text each new token adds to a sample, for streaming. Decoding token by
 * token is wrong for byte-level and SentencePiece vocabularies (a character can
 * span tokens, and a token's leading space depends on what precedes it), and
 * decoding the whole sample every step costs O(length²). As Hugging Face's text
 * streamers do, a short window is decoded twice — up to the last emitted token,
 * and through the new one — and what grew is emitted; a window ending in
 * U+FFFD (an incomplete UTF-8 character) is held until a later token completes it.
 */
import type { TextTokenizer } from "../model/tokenizer.ts"

export class TokenText {
  /** the window starts here: tokens before it are emitted and never decoded again */
  private prefixOffset = 0
  /** tokens up to here are emitted */
  private readOffset = 0

  constructor(private readonly tokenizer: TextTokenizer) {}

  /** The text that `tokens` (the sample's tokens so far, newest last) adds since the last call: "" while a character is incomplete. */
  next(tokens: ReadonlyArray<number>): string {
    const emitted = this.tokenizer.decode(tokens.slice(this.prefixOffset, this.readOffset))
    const now = this.tokenizer.decode(tokens.slice(this.prefixOffset))
    if (now.length <= emitted.length || now.endsWith("\uFFFD")) return ""
    this.prefixOffset = this.readOffset
    this.readOffset = tokens.length
    return now.slice(emitted.length)
  }
}
