/**
 * The library packages as a user gets them. `pnpm pack` of tree-cache,
 * kernels, runtime and server (each builds itself first, in its prepack
 * script); `npm install` of the tarballs into a new project outside the
 * workspace, their other dependencies from the npm registry; then, in that
 * project, tsc type-checks a user's program (pack/consumer.ts, pack/types.ts)
 * against the installed declarations and compiles it, and node runs it: it
 * greedy-decodes prompt trees with the synthetic tiny model on the software
 * adapter. Its tokens must equal those of the workspace's engine (the
 * sources) for the same trees: hand-picked ones and random ones.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scaled } from "./limits.ts"
import { type CaseNode, decodeCases, type DecodedTokens } from "./pack/consumer.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const LIBRARIES = ["tree-cache", "kernels", "runtime", "server"] as const
const MAX_TOKENS = 5

const run = (file: string, args: ReadonlyArray<string>, options: { cwd: string; input?: string; env?: NodeJS.ProcessEnv; timeout: number }) =>
  new Promise<string>((done, failed) => {
    const child = execFile(file, args, { ...options, encoding: "utf8", maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      error === null ? done(stdout) : failed(new Error(`${file} ${args.join(" ")} (in ${options.cwd}): ${error.message}\n${stdout}\n${stderr}`)))
    if (options.input !== undefined) child.stdin?.end(options.input)
  })

/**
 * The environment of a user's project: without the source condition the tests run under (vitest.source.ts),
 * which would point node at the tarballs' TypeScript sources.
 */
const userEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  NODE_OPTIONS: (process.env["NODE_OPTIONS"] ?? "").split(/\s+/).filter((o) => o !== "--conditions=@canopy/source").join(" ")
})

const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(join(root, "packages", name, "package.json"), "utf8")) as { version: string }).version

const node = (piece: CaseNode["piece"], samples: number, children: ReadonlyArray<CaseNode> = []): CaseNode => ({ piece, samples, children })

const HAND_PICKED: ReadonlyArray<CaseNode> = [
  // a shared prefix that samples itself, two branches, a grandchild, and a node that asks for nothing
  node("Solve each problem.\n", 1, [
    node("QUESTION: add\n", 2, [node("ANSWER:\n", 1)]),
    node("QUESTION: reverse\n", 1),
    node("QUESTION: idle\n", 0)
  ]),
  // token ids as the root's piece, under a text child
  node({ tokens: [5, 17, 200, 3] }, 0, [node("x", 2)])
]

const pieceArb: fc.Arbitrary<CaseNode["piece"]> = fc.oneof(
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 8 }),
  fc.record({ tokens: fc.array(fc.integer({ min: 0, max: 259 }), { minLength: 1, maxLength: 4 }) })
)

// At most 3 levels below the root and 2 children a node: 15 nodes at most (an unbounded recursion can draw thousands).
const caseArb: fc.Arbitrary<CaseNode> = fc.letrec<{ node: CaseNode }>((tie) => ({
  node: fc.record({
    piece: pieceArb,
    samples: fc.integer({ min: 0, max: 2 }),
    children: fc.oneof({ maxDepth: 3, depthIdentifier: "tree" }, fc.constant([]), fc.array(tie("node"), { minLength: 1, maxLength: 2 }))
  })
})).node

// A tree that asks for no samples is an error (InvalidPromptTree), not an empty run: every random root asks for one at least.
const rootArb = caseArb.map((c) => (c.samples > 0 ? c : { ...c, samples: 1 }))

const CASES: ReadonlyArray<CaseNode> = [...HAND_PICKED, ...fc.sample(rootArb, { numRuns: 3 })]

let work = ""
let project = ""

/** Packs each library (its prepack builds it) and returns the tarballs' paths. */
const pack = async (): Promise<Record<string, string>> => {
  const tarballs = join(work, "tarballs")
  mkdirSync(tarballs)
  const paths: Record<string, string> = {}
  // one after another: each prepack runs `tsc -b` over the packages it depends on
  for (const name of LIBRARIES) {
    await run("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(root, "packages", name), timeout: scaled(120_000) })
    paths[`@canopy/${name}`] = join(tarballs, `canopy-${name}-${versionOf(name)}.tgz`)
  }
  return paths
}

const writeProject = (tarballs: Record<string, string>): void => {
  mkdirSync(project)
  // what `npm install ./canopy-*.tgz` writes
  const dependencies = Object.fromEntries(Object.entries(tarballs).map(([name, path]) => [name, `file:${path}`]))
  const manifest = { name: "canopy-pack-check", private: true, type: "module", dependencies, devDependencies: { "@types/node": "^20.19.0" } }
  writeFileSync(join(project, "package.json"), JSON.stringify(manifest, null, 2))
  const compilerOptions = {
    target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true, skipLibCheck: true, types: ["node"], outDir: "."
  }
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["consumer.ts", "types.ts"] }, null, 2))
  for (const file of ["consumer.ts", "types.ts"]) writeFileSync(join(project, file), readFileSync(join(import.meta.dirname, "pack", file)))
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "canopy-pack-"))
  project = join(work, "project")
  writeProject(await pack())
  await run("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], { cwd: project, env: userEnv(), timeout: scaled(300_000) })
})

afterAll(() => {
  if (work !== "") rmSync(work, { recursive: true, force: true })
})

describe("the packed libraries in a new project", () => {
  it("install as built packages: dist, sources, license; no workspace links, no tests", () => {
    for (const name of LIBRARIES) {
      const dir = join(project, "node_modules", "@canopy", name)
      const manifest = readFileSync(join(dir, "package.json"), "utf8")
      expect(manifest).not.toContain("workspace:")
      expect(JSON.parse(manifest)).toMatchObject({ name: `@canopy/${name}`, license: "MIT" })
      expect(JSON.parse(manifest)).not.toHaveProperty("private")
      for (const file of ["LICENSE", "dist/src/index.js", "dist/src/index.d.ts", "src/index.ts"]) expect(existsSync(join(dir, file)), `${name}: ${file}`).toBe(true)
      expect(readdirSync(join(dir, "dist"))).toEqual(["src"])
      // a library's @canopy dependencies are the installed tarballs, not a registry package of the same name
      expect(existsSync(join(dir, "node_modules", "@canopy")), `${name}: its own @canopy packages`).toBe(false)
    }
  })

  it("type-check a user's program against the declarations, and compile it", async () => {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
    await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: project, env: userEnv(), timeout: scaled(120_000) })
    expect(existsSync(join(project, "consumer.js"))).toBe(true)
  })

  it("greedy-decode the same tokens as the workspace's engine, from the installed dist", async () => {
    const input = JSON.stringify({ cases: CASES, maxTokens: MAX_TOKENS })
    // side by side: the installed packages in the child, the workspace's sources here
    const [output, workspace] = await Promise.all([
      run(process.execPath, ["consumer.js"], { cwd: project, input, env: userEnv(), timeout: scaled(180_000) }),
      decodeCases(CASES, MAX_TOKENS)
    ])
    const installed = JSON.parse(output) as { tokens: DecodedTokens; resolved: Array<string>; entries: Record<string, string> }

    for (const url of installed.resolved) {
      expect(fileURLToPath(url).startsWith(join(project, "node_modules", "@canopy")), url).toBe(true)
      expect(url).toMatch(/\/dist\/src\/[\w/]+\.js$/)
    }
    expect(installed.entries).toEqual({ "@canopy/tree-cache": "function", "@canopy/kernels": "function", "@canopy/server": "function" })
    expect(installed.tokens).toEqual(workspace)
    // the hand-picked trees ask for samples: the comparison is over tokens, not over empty lists
    expect(workspace[0]!.flat(2).length).toBeGreaterThan(0)
    // Two processes compile every pipeline on the software adapter: past the default limit on a busy machine, so
    // this test's own limit sits above the child's, which then fails first with what it printed.
  }, scaled(240_000))
})
