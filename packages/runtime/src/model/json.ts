/**
 * A value of a JSON text as written. JSON.parse turns 1e999 into Infinity,
 * which JSON.stringify then prints as null; an error about the value should
 * show what the file says. The scan is iterative (no recursion on nesting
 * depth) and expects text that JSON.parse has already accepted.
 */

const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\n" || c === "\r"

const skipSpace = (text: string, i: number): number => {
  while (i < text.length && isSpace(text[i])) i++
  return i
}

/** The index after the string starting at `i` (a quote). */
const skipString = (text: string, i: number): number => {
  for (i++; i < text.length; i++) {
    if (text[i] === "\\") i++
    else if (text[i] === "\"") return i + 1
  }
  return i
}

/** The index after the value starting at `i`. */
const skipValue = (text: string, i: number): number => {
  const first = text[i]
  if (first === "\"") return skipString(text, i)
  if (first === "{" || first === "[") {
    let depth = 0
    while (i < text.length) {
      const c = text[i]
      if (c === "\"") {
        i = skipString(text, i)
        continue
      }
      if (c === "{" || c === "[") depth++
      else if (c === "}" || c === "]") {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return i
  }
  while (i < text.length && !isSpace(text[i]) && text[i] !== "," && text[i] !== "]" && text[i] !== "}") i++
  return i
}

/**
 * The text of the value at `path` (object keys from the root), or undefined
 * when there is none. A repeated key resolves to its last occurrence, as in JSON.parse.
 */
export const rawJsonValue = (text: string, path: ReadonlyArray<string>): string | undefined => {
  let start = skipSpace(text, 0)
  let end = skipValue(text, start)
  for (const key of path) {
    if (text[start] !== "{") return undefined
    let found: readonly [number, number] | undefined
    let i = skipSpace(text, start + 1)
    while (i < end && text[i] === "\"") {
      const keyEnd = skipString(text, i)
      let name: unknown
      try {
        name = JSON.parse(text.slice(i, keyEnd))
      } catch {
        return undefined
      }
      const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1)
      const valueEnd = skipValue(text, valueStart)
      if (name === key) found = [valueStart, valueEnd]
      i = skipSpace(text, valueEnd)
      if (text[i] === ",") i = skipSpace(text, i + 1)
    }
    if (found === undefined) return undefined
    start = found[0]
    end = found[1]
  }
  return text.slice(start, end)
}

/** At most `max` characters of `text`, marked when cut. */
export const abbreviate = (text: string, max = 80): string => (text.length <= max ? text : `${text.slice(0, max)}…`)
