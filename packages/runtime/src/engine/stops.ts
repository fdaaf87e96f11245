/**
 * Stop strings. Checking a whole completion's text every step would cost
 * O(length²); only the tail that could hold a new match is decoded.
 */
import type { TextTokenizer } from "../model/tokenizer.ts"

export class StopMatcher {
  private readonly window: number

  constructor(readonly stops: ReadonlyArray<string>, private readonly tokenizer: TextTokenizer) {
    // A token decodes to at least one character (or to part of one: bytes), so
    // a stop string spans at most its length in tokens, plus a few for UTF-8.
    this.window = stops.length === 0 ? 0 : Math.max(...stops.map((s) => s.length)) + 4
  }

  /** Does the text of `tokens` now contain a stop string? */
  matches(tokens: ReadonlyArray<number>): boolean {
    if (this.window === 0) return false
    const tail = this.tokenizer.decode(tokens.slice(-this.window))
    return this.stops.some((s) => tail.includes(s))
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
}
