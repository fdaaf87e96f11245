/** The import hooks record-imports.mjs registers: each module a resolution ends at, one line of the log. */
import { appendFileSync } from "node:fs"

let log = ""

export const initialize = (data) => {
  log = data.log
}

export const resolve = async (specifier, context, next) => {
  const resolved = await next(specifier, context)
  appendFileSync(log, `${resolved.url}\n`)
  return resolved
}
