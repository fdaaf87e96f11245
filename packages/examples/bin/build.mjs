/**
 * Keeps the compiled command line as new as its sources. The command line is
 * packages/examples/dist plus the dist/ of every package it references
 * (tsconfig.json `references`, followed through). A package's build is stale
 * when anything under its src/, its tsconfig.json or tsconfig.base.json is
 * newer than its dist/tsconfig.tsbuildinfo, which `tsc -b` rewrites whenever
 * it looks at changed inputs. Checking is a walk of file times (milliseconds);
 * a stale build is rebuilt once with `tsc -b`, one process at a time.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs
  } catch {
    return Number.NEGATIVE_INFINITY
  }
}

/** The newest time under `dir`, folders included (a deleted file changes its folder's time). */
const newestUnder = (dir) => {
  let newest = mtime(dir)
  const pending = [dir]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    for (const entry of readdirSync(next, { withFileTypes: true })) {
      const path = join(next, entry.name)
      newest = Math.max(newest, mtime(path))
      if (entry.isDirectory()) pending.push(path)
    }
  }
  return newest
}

/** `project` and every project its tsconfig references, transitively. */
const projectsOf = (project) => {
  const found = new Set([project])
  for (const dir of found) {
    const { references = [] } = JSON.parse(readFileSync(join(dir, "tsconfig.json"), "utf8"))
    for (const { path } of references) found.add(resolve(dir, path))
  }
  return [...found]
}

const isStale = (project, repository) => {
  const built = mtime(join(project, "dist", "tsconfig.tsbuildinfo"))
  const inputs = Math.max(newestUnder(join(project, "src")), mtime(join(project, "tsconfig.json")), mtime(join(repository, "tsconfig.base.json")))
  return inputs > built
}

const anyStale = (project, repository) => {
  try {
    return projectsOf(project).some((p) => isStale(p, repository))
  } catch {
    return true // an unreadable tsconfig: let tsc say what is wrong
  }
}

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

const isAlive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return e.code === "EPERM"
  }
}

const holderOf = (lock) => {
  try {
    return Number(readFileSync(join(lock, "pid"), "utf8"))
  } catch {
    return 0 // just taken (no pid yet) or just released
  }
}

/** Runs `work` holding a lock folder, waiting for another holder; a lock whose holder has died is taken over. */
const withLock = (lock, work) => {
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch (e) {
      if (e.code !== "EEXIST") throw e
      const holder = holderOf(lock)
      if (holder > 0 && !isAlive(holder)) rmSync(lock, { recursive: true, force: true })
      else sleep(200)
    }
  }
  try {
    writeFileSync(join(lock, "pid"), String(process.pid))
    work()
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

/** Builds `project` (and what it references) when a build is missing or older than its sources. */
export const ensureBuilt = (project) => {
  const repository = resolve(project, "../..")
  if (!anyStale(project, repository)) return
  mkdirSync(join(project, "dist"), { recursive: true })
  withLock(join(project, "dist", ".build-lock"), () => {
    if (!anyStale(project, repository)) return // another process built it while this one waited
    process.stderr.write("canopy: compiling the command line (its build is missing or older than its sources)…\n")
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
    // tsc writes its diagnostics on stdout: they go to stderr, so that canopy's own output stays clean
    const { status, error } = spawnSync(process.execPath, [tsc, "-b", project], { cwd: dirname(project), stdio: ["ignore", 2, 2] })
    if (error !== undefined) throw error
    // tsc -b still writes the JavaScript of a project with type errors
    if (status !== 0) process.stderr.write("canopy: the sources have type errors (above); running what compiled\n")
  })
}
