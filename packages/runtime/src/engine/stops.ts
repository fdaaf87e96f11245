/**
 * Stop strings, checked incrementally: each call looks at the text the new
 * tokens add and at the tail of the text before them that a stop string
 * reaching into the new text could start in (one unit shorter than the
 * longest stop), not at the whole completion or a window of it as long as
 * the longest stop.
 *
 * The new text is found as streamers find it (see tokenText.ts): tokens are
 * decoded from the start of the previous group of committed tokens, and what
 * that group decodes to on its own is cut off the front, so that a token's
 * leading space (SentencePiece) or a character split across byte tokens comes
 * out as the whole text has it (a group that decodes to nothing on its own
 * cannot show that, so the window then reaches back further). A group is
 * committed once its text ends in a whole character (not U+FFFD, which a
 * later byte may still complete); until then it is decoded again with the
 * next token. Committed text never changes, so a stop found in it stays found.
 */
import type { TextTokenizer } from "../model/tokenizer.ts"

export class StopMatcher {
  /** units of committed text a stop ending in new text may reach back into */
  private readonly reach: number
  /** the last `reach` UTF-16 units of the committed text */
  private tail = ""
  /** a stop lies in the committed text */
  private committedMatch = false
  /** the previous committed group starts here: decoding starts here */
  private groupStart = 0
  /** tokens before this are committed */
  private committed = 0
  /** what tokens [groupStart, committed) decode to on their own */
  private groupText = ""
  /** tokens seen by the last call */
  private seen = 0

  constructor(readonly stops: ReadonlyArray<string>, private readonly tokenizer: TextTokenizer) {
    this.reach = Math.max(0, ...stops.map((s) => s.length - 1))
  }

  /**
   * Does the text of `tokens` now contain a stop string? `tokens` is a
   * sample's tokens so far: each call sees the previous call's tokens and
   * more (a shorter list starts the matcher over).
   */
  matches(tokens: ReadonlyArray<number>): boolean {
    if (this.stops.length === 0) return false
    if (tokens.length < this.seen) this.restart()
    this.seen = tokens.length
    if (this.committedMatch) return true
    const decoded = this.tokenizer.decode(tokens.slice(this.groupStart))
    if (!decoded.startsWith(this.groupText)) return this.wholeTextMatches(tokens)
    const pending = decoded.slice(this.groupText.length)
    const text = this.tail + pending
    const found = this.contains(text)
    if (!pending.endsWith("\uFFFD")) {
      this.committedMatch = found
      this.tail = this.reach === 0 ? "" : text.slice(-this.reach)
      // the new group starts the next window, unless it decodes to nothing on its own (special tokens, a
      // SentencePiece "▁" whose space is stripped there): it could not show the next token's leading space
      const group = this.tokenizer.decode(tokens.slice(this.committed))
      if (group === "") this.groupText = decoded
      else {
        this.groupStart = this.committed
        this.groupText = group
      }
      this.committed = tokens.length
    }
    return found
  }

  /** The completion's text, cut before the first stop string. */
  finalText(tokens: ReadonlyArray<number>): string {
    const text = this.tokenizer.decode(tokens)
    let cut = text.length
    for (const s of this.stops) {
      const at = text.indexOf(s)
      if (at >= 0 && at < cut) cut = at
    }
    return text.slice(0, cut)
  }

  private contains(text: string): boolean {
    for (const s of this.stops) if (text.includes(s)) return true
    return false
  }

  private restart(): void {
    this.tail = ""
    this.committedMatch = false
    this.groupStart = this.committed = 0
    this.groupText = ""
  }

  /**
   * A tokenizer whose text for the earlier group changed with the new tokens
   * (one that merges text across tokens, unlike byte-level and SentencePiece
   * decoders): the whole text decides.
   */
  private wholeTextMatches(tokens: ReadonlyArray<number>): boolean {
    return this.contains(this.tokenizer.decode(tokens))
  }
}
