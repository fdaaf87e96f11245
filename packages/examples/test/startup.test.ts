/**
 * `canopy --help` starts at once: the command tree's flags and descriptions
 * are static, and each command imports what it runs only when it runs. The
 * help lists every subcommand the tree holds, and neither `canopy --help` nor
 * `canopy adapter --help` loads the kernels or Dawn (`webgpu`), while
 * `canopy adapter` itself does (so the probe is seen to see them). Each
 * process runs bin/canopy.mjs as a user does, here on the sources
 * (vitest.source.ts). The libraries' bounds that the help shows are copies
 * (cli/bounds.ts), checked here against the libraries.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as queue from "@canopy/queue"
import * as runtime from "@canopy/runtime"
import * as server from "@canopy/server"
import type { Command } from "effect/cli"
import { afterAll, describe, expect, it } from "vitest"
import { DEFAULT_BLOCK_SIZE as KV_BLOCK_SIZE } from "../src/bench/kvCapacity.ts"
import * as bounds from "../src/cli/bounds.ts"
import { canopy as canopyCommand } from "../src/cli/canopy.ts"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const bin = join(root, "packages/examples/bin/canopy.mjs")
const probe = join(import.meta.dirname, "startup", "record-imports.mjs")
const dir = mkdtempSync(join(tmpdir(), "canopy-startup-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const canopy = (args: ReadonlyArray<string>, preload: ReadonlyArray<string> = [], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [...preload, bin, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    // spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
    timeout: scaled(60_000)
  })

let logs = 0
/** What a `canopy` run loaded: every module it resolved or required, and "mapped: dawn.node" if Dawn's library was mapped. */
const loadedBy = (args: ReadonlyArray<string>) => {
  const log = join(dir, `imports-${logs++}.log`)
  writeFileSync(log, "")
  const run = canopy(args, ["--import", probe], { CANOPY_IMPORT_LOG: log })
  return { status: run.status, stderr: run.stderr, loaded: readFileSync(log, "utf8").split("\n").filter((line) => line !== "") }
}

const KERNELS = /\/packages\/kernels\/|\/@canopy\/kernels\//
const DAWN = /\/node_modules\/webgpu\/|^mapped: dawn\.node$/

/** The SUBCOMMANDS section of a help text: each line's name and description. */
const listed = (help: string): Map<string, string> => {
  const section = help.split(/^SUBCOMMANDS$/m)[1] ?? ""
  return new Map([...section.matchAll(/^ {2}(\S+) +(.+)$/gm)].map((m) => [m[1]!, m[2]!.trim()]))
}

/** Every command of the tree that has subcommands, with the arguments that reach it. */
const parents = (): Array<{ path: Array<string>; command: Command.Command.Any }> => {
  const found: Array<{ path: Array<string>; command: Command.Command.Any }> = []
  const pending: Array<{ path: Array<string>; command: Command.Command.Any }> = [{ path: [], command: canopyCommand }]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const children = next.command.subcommands.flatMap((group) => group.commands)
    if (children.length > 0) found.push(next)
    for (const child of children) pending.push({ path: [...next.path, child.name], command: child })
  }
  return found
}

describe("canopy --help", () => {
  it("lists every subcommand the command tree holds, each with its description", () => {
    for (const { path, command } of parents()) {
      const run = canopy([...path, "--help"])
      expect(run.status, run.stderr).toBe(0)
      const shown = listed(run.stdout)
      const children = command.subcommands.flatMap((group) => group.commands)
      expect([...shown.keys()].sort(), `canopy ${path.join(" ")} --help`).toEqual(children.map((c) => c.name).sort())
      for (const child of children) {
        const summary = (child.shortDescription ?? child.description ?? "").split("\n")[0]!
        expect(shown.get(child.name), `canopy ${[...path, child.name].join(" ")}`).toBe(summary)
      }
    }
  })

  it("loads neither the kernels nor Dawn, for canopy --help or a command's --help", () => {
    for (const args of [["--help"], ["adapter", "--help"]]) {
      const { status, stderr, loaded } = loadedBy(args)
      expect(status, stderr).toBe(0)
      expect(loaded.some((url) => url.includes("/src/cli/canopy.")), "the probe saw the command tree load").toBe(true)
      expect([...new Set(loaded.filter((url) => KERNELS.test(url) || DAWN.test(url)))], `canopy ${args.join(" ")}`).toEqual([])
    }
  })

  it("while running canopy adapter loads both (what the probe above looks for)", () => {
    const { loaded } = loadedBy(["adapter"])
    expect(loaded.some((url) => KERNELS.test(url))).toBe(true)
    expect(loaded.some((url) => DAWN.test(url))).toBe(true)
  })
})

describe("the bounds the help shows", () => {
  it("are the libraries' own", () => {
    expect(bounds.MAX_REQUEST_SAMPLES).toBe(runtime.MAX_REQUEST_SAMPLES)
    expect(bounds.MAX_TREE_DEPTH).toBe(runtime.MAX_TREE_DEPTH)
    expect(bounds.MAX_BATCH_ROWS).toBe(runtime.MAX_BATCH_ROWS)
    expect(bounds.PRESET_NAMES).toEqual(runtime.PRESET_NAMES)
    expect(server.DEFAULTS).toMatchObject(bounds.SERVER_DEFAULTS)
    expect(bounds.MAX_RUN_SAMPLES).toBe(queue.MAX_RUN_SAMPLES)
    expect(bounds.DEFAULT_GRACE_MS).toBe(queue.DEFAULT_GRACE_MS)
    expect(bounds.DEFAULT_BLOCK_SIZE).toBe(KV_BLOCK_SIZE)
  })
})
