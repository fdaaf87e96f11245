/**
 * Log-probabilities of generated tokens, from the logits each decode step
 * sampled from (the engine's `onLogits`): log-softmax of the model's raw
 * logits, before temperature, top-k and top-p reshape them — the model's own
 * belief, as vLLM reports it by default. The engine reports a step's logits
 * before the tokens it drew from them, so each row waits here until its token
 * arrives.
 */
import type { GenerateEvents, TextTokenizer } from "@canopy/runtime"

export interface TokenChoice {
  readonly token: number
  readonly logprob: number
}

export interface TokenLogprob extends TokenChoice {
  /** the likeliest tokens at that step, likeliest first */
  readonly top: ReadonlyArray<TokenChoice>
}

type LogitsEvent = Parameters<NonNullable<GenerateEvents["onLogits"]>>[0]

/** The `k` largest entries of `row`, largest first (k is small: a partial insertion sort). */
const topK = (row: Float32Array, k: number, lse: number): Array<TokenChoice> => {
  const best: Array<{ value: number; token: number }> = []
  if (k === 0) return []
  for (let t = 0; t < row.length; t++) {
    const value = row[t]!
    if (best.length === k && value <= best[k - 1]!.value) continue
    let at = best.length
    while (at > 0 && best[at - 1]!.value < value) at--
    best.splice(at, 0, { value, token: t })
    if (best.length > k) best.pop()
  }
  return best.map((b) => ({ token: b.token, logprob: b.value - lse }))
}

const logSumExp = (row: Float32Array): number => {
  let max = -Infinity
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max)
  return max + Math.log(sum)
}

export class LogprobCollector {
  private readonly pending = new Map<string, { readonly row: Float32Array; readonly lse: number; readonly top: Array<TokenChoice> }>()

  constructor(private readonly vocabSize: number, private readonly k: number) {}

  /** Keeps each row of a step until its token arrives (the next `take` for that sample, within the same step). */
  onLogits = (event: LogitsEvent): void => {
    this.pending.clear()
    event.rows.forEach((r, i) => {
      const row = event.logits.subarray(i * this.vocabSize, (i + 1) * this.vocabSize)
      const lse = logSumExp(row)
      this.pending.set(`${r.path.join(".")}#${r.sample}`, { row, lse, top: topK(row, this.k, lse) })
    })
  }

  /** The logprob of `token` drawn for this sample at the last step, with the step's top alternatives. */
  take(path: ReadonlyArray<number>, sample: number, token: number): TokenLogprob | undefined {
    const key = `${path.join(".")}#${sample}`
    const p = this.pending.get(key)
    if (p === undefined) return undefined
    this.pending.delete(key)
    return { token, logprob: p.row[token]! - p.lse, top: p.top }
  }
}

/** The text of one token on its own, as the logprobs lists name it. */
export const tokenString = (tokenizer: TextTokenizer, token: number): string => tokenizer.decode([token])

/** Completions' `logprobs` object for one choice's tokens. */
export const completionLogprobs = (
  tokenizer: TextTokenizer, entries: ReadonlyArray<TokenLogprob>, textOffset: number
) => {
  const tokens: Array<string> = []
  const tokenLogprobs: Array<number> = []
  const top: Array<Record<string, number>> = []
  const offsets: Array<number> = []
  let offset = textOffset
  for (const e of entries) {
    const s = tokenString(tokenizer, e.token)
    tokens.push(s)
    tokenLogprobs.push(e.logprob)
    const alternatives: Record<string, number> = {}
    for (const t of e.top) {
      const name = tokenString(tokenizer, t.token)
      // Two tokens that print the same keep the likelier one: a dict cannot hold both.
      if (!(name in alternatives)) alternatives[name] = t.logprob
    }
    top.push(alternatives)
    offsets.push(offset)
    offset += s.length
  }
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: offsets }
}

const bytesOf = (s: string): Array<number> => Array.from(new TextEncoder().encode(s))

/** Chat's `logprobs.content` entries for one choice's tokens. */
export const chatLogprobs = (tokenizer: TextTokenizer, entries: ReadonlyArray<TokenLogprob>, k: number) =>
  entries.map((e) => {
    const token = tokenString(tokenizer, e.token)
    return {
      token,
      logprob: e.logprob,
      bytes: bytesOf(token),
      top_logprobs: e.top.slice(0, k).map((t) => {
        const s = tokenString(tokenizer, t.token)
        return { token: s, logprob: t.logprob, bytes: bytesOf(s) }
      })
    }
  })
