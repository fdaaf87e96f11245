/**
 * Figures from repeated measurements: a median with the spread around it, and
 * speed-ups worded so that a slowdown never reads as "faster". A single run
 * of a comparison on a shared machine says little (the first mode measured
 * pays for compiles, other processes come and go), so every comparison is
 * repeated and printed with its range.
 */

export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
  /** measurements the figure summarizes */
  readonly n: number
}

export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export const spreadOf = (xs: ReadonlyArray<number>): Spread => {
  const finite = xs.filter(Number.isFinite)
  return finite.length === 0
    ? { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
    : { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), n: finite.length }
}

/**
 * Per-round ratios slow[i] / fast[i]: each round's modes ran back to back, so
 * a change in the machine's load between rounds falls on both sides of a ratio.
 */
export const pairedRatios = (slow: ReadonlyArray<number>, fast: ReadonlyArray<number>): ReadonlyArray<number> =>
  slow.slice(0, fast.length).map((s, i) => (fast[i]! > 0 ? s / fast[i]! : Number.NaN))

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : "—")

/** Ratios always carry two decimals: "2.07×". */
export const times = (ratio: number): string => `${fixed(ratio, 2)}×`

/** Within rounding of 1: neither faster nor slower. */
const even = (ratio: number): boolean => times(ratio) === "1.00×"

/**
 * A speed-up (reference time / this time) in words: "2.07× faster",
 * "0.86× (1.16× slower)", "1.00× (same speed)".
 */
export const speedUpText = (ratio: number): string => {
  if (!Number.isFinite(ratio)) return "—"
  if (even(ratio)) return `${times(ratio)} (same speed)`
  return ratio > 1 ? `${times(ratio)} faster` : `${times(ratio)} (${times(1 / ratio)} slower)`
}

/** "1.98–2.15×"; empty for a single measurement. */
export const rangeText = (s: Spread, digits = 2, unit = "×"): string =>
  s.n > 1 ? `${fixed(s.min, digits)}–${fixed(s.max, digits)}${unit}` : ""

/** The rounds disagree on the direction: some faster, some slower. */
export const straddlesOne = (s: Spread): boolean => s.n > 1 && s.min < 1 && s.max > 1 && !even(s.min) && !even(s.max)

export interface RatioPhraseOptions {
  /** name the number of rounds ("over 3 rounds"); off where a heading already says it */
  readonly rounds?: boolean
}

/**
 * A speed-up with its range over rounds:
 * "2.07× faster (1.98–2.15× over 3 rounds)",
 * "0.86× (1.16× slower; 0.84–0.88× over 3 rounds)",
 * "1.02× faster (0.95–1.10× over 3 rounds: no clear difference)".
 */
export const ratioPhrase = (s: Spread, options: RatioPhraseOptions = {}): string => {
  const r = s.median
  if (!Number.isFinite(r)) return "—"
  const head = even(r) || r > 1 ? (even(r) ? times(r) : `${times(r)} faster`) : times(r)
  const notes: Array<string> = []
  if (even(r)) notes.push("same speed")
  else if (r < 1) notes.push(`${times(1 / r)} slower`)
  if (s.n > 1) {
    const over = options.rounds === false ? "" : ` over ${s.n} rounds`
    notes.push(`${rangeText(s)}${over}${straddlesOne(s) ? ": no clear difference" : ""}`)
  }
  return notes.length > 0 ? `${head} (${notes.join("; ")})` : head
}

/** A value with its range: "7.12 (6.98–7.40)"; the value alone for one measurement. */
export const valueWithRange = (s: Spread, digits: number, unit = ""): string =>
  s.n > 1 ? `${fixed(s.median, digits)}${unit} (${fixed(s.min, digits)}–${fixed(s.max, digits)})` : `${fixed(s.median, digits)}${unit}`
