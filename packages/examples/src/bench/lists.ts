/**
 * Comma-separated integer lists for sweep flags (`--batch 8,32,64`).
 */

/** Parses "8,32,64" into [8, 32, 64]; throws a RangeError naming the bad entry. */
export const parseIntList = (text: string, min: number): ReadonlyArray<number> => {
  const parts = text.split(",").map((s) => s.trim())
  if (parts.length === 0 || parts.every((p) => p === "")) throw new RangeError(`expected a comma-separated list of integers, got "${text}"`)
  return parts.map((part) => {
    const value = /^[+]?\d+$/.test(part) ? Number(part) : NaN
    if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`"${part}" is not an integer ≥ ${min} (in "${text}")`)
    return value
  })
}
