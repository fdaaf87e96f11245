/**
 * Preloaded (`node --import`) by startup.test.ts into a `canopy` process: it
 * appends to the file $CANOPY_IMPORT_LOG every module the process imports or
 * requires, and, as it exits, whether Dawn's native library is mapped into it.
 */
import { appendFileSync, readFileSync } from "node:fs"
import { createRequire, register } from "node:module"

const log = process.env["CANOPY_IMPORT_LOG"]
register("./import-hooks.mjs", import.meta.url, { data: { log } })

process.on("exit", () => {
  // require() does not pass through the import hooks: the module cache holds what it loaded
  const required = Object.keys(createRequire(import.meta.url).cache)
  const maps = readFileSync("/proc/self/maps", "utf8")
  appendFileSync(log, [...required, ...(maps.includes("dawn.node") ? ["mapped: dawn.node"] : [])].map((line) => `${line}\n`).join(""))
})
