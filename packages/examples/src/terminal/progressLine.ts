/**
 * A status line on standard error: rewritten in place on a terminal, plain
 * lines elsewhere (logs, CI), so a long sweep shows where it is.
 */
export interface ProgressLine {
  update(text: string): void
  /** a line that stays, above the status line */
  note(text: string): void
  /** clears the status line */
  end(): void
}

export const progressLine = (stream: NodeJS.WriteStream = process.stderr): ProgressLine => {
  const tty = stream.isTTY === true
  let shown = false
  const clear = () => {
    if (shown) stream.write("\r\x1b[K")
    shown = false
  }
  return {
    update(text) {
      if (!tty) return void stream.write(`${text}\n`)
      clear()
      stream.write(text.slice(0, Math.max(20, (stream.columns ?? 120) - 1)))
      shown = true
    },
    note(text) {
      clear()
      stream.write(`${text}\n`)
    },
    end: clear
  }
}
