/**
 * Whether two engines' samples agree: every token equal, or, from the first
 * token that differs on, a near-tie. At that token each engine's logits rank
 * the two candidates within f32 tolerance of each other, and the two
 * engines' logits agree there (and at every step before) within the same
 * tolerance: the engines computed the same model, and rounding alone picked
 * a different top token. After it the two sequences have different
 * contexts, so nothing later is compared.
 */

export interface SampleRun {
  readonly tokens: ReadonlyArray<number>
  /** the logits each token was drawn from, in order */
  readonly logits: ReadonlyArray<ArrayLike<number>>
}

/** f32 rounding across two different kernel schedules, relative to the logits' scale. */
export const LOGIT_TOLERANCE = 1e-3

export type Agreement =
  | { readonly kind: "equal"; readonly maxLogitDiff: number }
  | { readonly kind: "near-tie"; readonly at: number; readonly gap: number; readonly maxLogitDiff: number }
  | { readonly kind: "differ"; readonly reason: string }

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = a.length === b.length ? 0 : Infinity
  for (let i = 0; i < Math.min(a.length, b.length); i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

const scaleOf = (a: ArrayLike<number>): number => {
  let m = 1
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!))
  return m
}

/** Compares the logits up to and including step `last`; the largest difference, or a reason they disagree. */
const logitsAgree = (page: SampleRun, node: SampleRun, last: number): { readonly max: number } | { readonly reason: string } => {
  let max = 0
  for (let step = 0; step <= last; step++) {
    const [p, n] = [page.logits[step], node.logits[step]]
    if (p === undefined || n === undefined) return { reason: `no logits for step ${step}` }
    const diff = maxAbsDiff(p, n)
    if (diff > LOGIT_TOLERANCE * scaleOf(n)) return { reason: `logits at step ${step} differ by ${diff}, beyond f32 tolerance` }
    max = Math.max(max, diff)
  }
  return { max }
}

export const compareSample = (page: SampleRun, node: SampleRun): Agreement => {
  const length = Math.min(page.tokens.length, node.tokens.length)
  let at = 0
  while (at < length && page.tokens[at] === node.tokens[at]) at++
  if (at === length && page.tokens.length === node.tokens.length) {
    const agree = logitsAgree(page, node, length - 1)
    return "reason" in agree ? { kind: "differ", reason: agree.reason } : { kind: "equal", maxLogitDiff: agree.max }
  }
  if (at === length) return { kind: "differ", reason: `one sample stops after ${length} tokens, the other goes on` }
  const agree = logitsAgree(page, node, at)
  if ("reason" in agree) return { kind: "differ", reason: `tokens differ at ${at} and ${agree.reason}` }
  const [a, b] = [page.tokens[at]!, node.tokens[at]!]
  const gap = Math.max(Math.abs(page.logits[at]![a]! - page.logits[at]![b]!), Math.abs(node.logits[at]![a]! - node.logits[at]![b]!))
  const tolerance = LOGIT_TOLERANCE * scaleOf(node.logits[at]!)
  return gap <= tolerance
    ? { kind: "near-tie", at, gap, maxLogitDiff: agree.max }
    : { kind: "differ", reason: `token ${at}: ${a} against ${b}, whose logits are ${gap} apart (tolerance ${tolerance})` }
}
