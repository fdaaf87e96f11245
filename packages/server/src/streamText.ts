/**
 * The text one streamed choice may send so far. The engine's token events
 * carry everything a token adds, stop strings included, while its final text
 * is cut before the first stop string; so a tail that could still become a
 * stop string is held back until the next token decides it, and nothing at or
 * after a stop string is ever sent. What was sent is therefore always a prefix
 * of the final text, and `finish` sends the rest.
 */
export class StreamText {
  private raw = ""
  private sent = 0
  private stopped = false

  constructor(private readonly stops: ReadonlyArray<string>) {}

  /** The text to send now, given what the next token added. */
  push(added: string): string {
    if (this.stopped || added.length === 0) return ""
    this.raw += added
    if (this.stops.length === 0) {
      this.sent = this.raw.length
      return added
    }
    // Text already sent holds no stop string, nor (being held back otherwise) the start of one: search from there.
    let cut = -1
    for (const s of this.stops) {
      const at = this.raw.indexOf(s, this.sent)
      if (at >= 0 && (cut < 0 || at < cut)) cut = at
    }
    let end: number
    if (cut >= 0) {
      this.stopped = true
      end = cut
    } else {
      end = this.raw.length - this.heldBack()
    }
    const out = end > this.sent ? this.raw.slice(this.sent, end) : ""
    this.sent = Math.max(this.sent, end)
    return out
  }

  /** The rest of the final text, once the engine reports it. */
  finish(finalText: string): string {
    const sent = this.raw.slice(0, this.sent)
    const rest = finalText.startsWith(sent) ? finalText.slice(sent.length) : ""
    this.sent += rest.length
    this.stopped = true
    return rest
  }

  /** The longest tail of the text that is the start of a stop string. */
  private heldBack(): number {
    let longest = 0
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.raw.length - this.sent); k > longest; k--) {
        if (this.raw.endsWith(s.slice(0, k))) {
          longest = k
          break
        }
      }
    }
    return longest
  }
}
