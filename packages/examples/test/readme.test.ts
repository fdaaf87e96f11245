/**
 * The README and the API reference (docs/api.md), run as a reader would run
 * them, so that no snippet in them rots.
 *
 * Every ```ts block is saved in a scratch folder under packages/examples/
 * (where, as the README says, its imports resolve, just as in
 * packages/examples/examples/) and run with `pnpm exec tsx` from the
 * repository root; it must exit 0 on its own.
 *
 * Every line of every ```sh block is checked, in the README's order and in
 * one scratch folder (a file one line writes is there for the next):
 * - `pnpm canopy …` that is quick on the software adapter runs as written and must exit 0;
 * - the slow ones (the demo, the pipeline, the GPU benchmarks, a model folder) run as
 *   written where no adapter can be found: they must get past their flags (a bad flag
 *   exits 2) and stop at opening the GPU (GpuNoAdapter, exit 1), or at a model folder
 *   this machine does not have;
 * - `make TARGET` must be a target (`make -n`), `pnpm vitest run ARGS` must select
 *   tests (`pnpm vitest list ARGS`);
 * - `scripts/gpu-pack.sh ENTRY…` must name entry files that exist (gpu-pack.test.ts packs
 *   for real), and `bash .gpu/run.sh NAME.mjs …` a bundle that an earlier pack line makes;
 * - `echo … > FILE` runs as written.
 * A line no rule covers fails the test until it gets one here. The
 * `pnpm canopy …` commands with flags quoted inline in the prose are
 * parse-checked like the slow ones (one that needs no GPU may instead
 * finish), and every relative link must lead to a file (and heading) that
 * exists. The snippets and the sh blocks run side by side: most of their time
 * is processes starting and kernels compiling.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { marked, type Token, type Tokens } from "marked"
import { afterAll, beforeAll, describe, expect, type ExpectStatic, it } from "vitest"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))

/** The documents whose snippets a reader runs: the README, and the API reference it links to. */
const DOCS = ["README.md", "docs/api.md"]

const collect = <T extends Token>(tokens: Array<Token>, type: T["type"]): Array<T> => {
  const found: Array<T> = []
  marked.walkTokens(tokens, (t) => void (t.type === type && found.push(t as T)))
  return found
}

// A scratch folder inside the workspace, so that workspace packages resolve from it. Made by a hook,
// not on import: collecting this file (`vitest list`, which the README's test line runs) must leave nothing.
let scratch = ""
beforeAll(() => void (scratch = mkdtempSync(join(root, "packages/examples/.readme-"))))
afterAll(() => void (scratch !== "" && rmSync(scratch, { recursive: true, force: true })))

interface Ran {
  readonly command: string
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a shell line; its whole process group is killed if it outlives `timeoutMs`. */
const sh = (command: string, options: { cwd: string; env?: Record<string, string>; timeoutMs: number }): Promise<Ran> =>
  new Promise((done, failed) => {
    const child = spawn("bash", ["-c", command], { cwd: options.cwd, env: { ...process.env, ...options.env }, detached: true })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => void (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => void (stderr += d.toString()))
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${options.timeoutMs} ms]`
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // already gone
      }
    }, options.timeoutMs)
    child.on("error", failed)
    child.on("close", (code) => {
      clearTimeout(timer)
      done({ command, code, stdout, stderr })
    })
  })

const tail = (text: string, chars = 3000): string => (text.length > chars ? `…${text.slice(-chars)}` : text)
const report = (r: Ran): string =>
  `\`${r.command}\` exited ${r.code}\n--- stdout ---\n${tail(r.stdout)}\n--- stderr ---\n${tail(r.stderr)}`

/** The line without its trailing `# comment` (a # outside quotes, after a space). */
const stripComment = (line: string): string => {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote !== undefined) {
      if (c === quote) quote = undefined
    } else if (c === "'" || c === '"') {
      quote = c
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i).trim()
    }
  }
  return line.trim()
}

/** Shell words, for telling commands apart (quotes removed; nothing is expanded). */
const words = (line: string): Array<string> =>
  [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!)

/** Whether a `pnpm canopy` command takes long enough on the software adapter that it is parse-checked instead of run. */
const isSlow = (w: ReadonlyArray<string>): boolean => {
  const [sub, subsub] = [w[2], w[3]]
  const model = w.indexOf("--model")
  // serve never exits by itself: its flags are checked, the server itself is tested in packages/server
  return sub === "demo" || sub === "sample" || sub === "serve" || (sub === "bench" && subsub !== "plan") ||
    (model >= 0 && !(w[model + 1] ?? "").startsWith("synthetic:"))
}

/** Where no adapter can be found: a command stops at opening the GPU, after its flags parsed. */
const NO_ADAPTER = { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" }

/**
 * Runs a command where no adapter can be found: it must parse its flags, then
 * finish (a command without the GPU) or stop at opening the GPU; one that
 * names a model folder may stop before that, at the folder (which the
 * README's examples name but this machine lacks). A bad flag stops earlier
 * still, with exit code 2 and no `canopy: ` line.
 */
const parseCheck = async (expect: ExpectStatic, command: string, cwd: string): Promise<void> => {
  const r = await sh(command, { cwd, env: NO_ADAPTER, timeoutMs: scaled(60_000) })
  const w = words(command)
  const folder = w.includes("--model") ? w[w.indexOf("--model") + 1] ?? "" : ""
  const parsed = r.code === 0 || (r.code === 1 && r.stderr.includes("GpuNoAdapter")) ||
    (folder !== "" && !folder.startsWith("synthetic:") && !existsSync(folder) && r.code === 2 &&
      r.stderr.includes(`canopy: ModelFileError: ${folder}`))
  expect(parsed, `it should parse its flags, then finish or stop at opening the GPU (or a missing model folder):\n${report(r)}`).toBe(true)
}

describe.each(DOCS)("%s", (doc) => {
  const docPath = join(root, doc)
  const tokens = marked.lexer(readFileSync(docPath, "utf8"))
  const codeBlocks = collect<Tokens.Code>(tokens, "code")
  const tsSnippets = codeBlocks.filter((b) => b.lang === "ts").map((b) => b.text)
  const shBlocks = codeBlocks.filter((b) => b.lang === "sh").map((b) => b.text)
  const tag = doc.replace(/\W+/g, "-")

  it("has snippets to check", () => {
    expect(tsSnippets.length).toBeGreaterThan(0)
    if (doc === "README.md") expect(shBlocks.length).toBeGreaterThan(0)
  })

  tsSnippets.forEach((snippet, i) => {
    const first = snippet.split("\n").find((l) => l.trim() !== "") ?? ""
    it.concurrent(`ts snippet ${i + 1} (${first.slice(0, 60)}) runs and exits 0`, async ({ expect }) => {
      const file = join(scratch, `${tag}-snippet-${i + 1}.ts`)
      writeFileSync(file, snippet)
      const r = await sh(`pnpm exec tsx ${JSON.stringify(file)}`, { cwd: root, timeoutMs: scaled(90_000) })
      expect(r.code, report(r)).toBe(0)
      expect(r.stdout.trim(), report(r)).not.toBe("")
    })
  })

  it.concurrent("every line of its sh blocks runs, or parses, as written", async ({ expect }) => {
    const cwd = join(scratch, `${tag}-sh`)
    mkdirSync(cwd)
    const bundles = new Set<string>()
    for (const line of shBlocks.flatMap((b) => b.split("\n")).map(stripComment).filter((l) => l !== "")) {
      const w = words(line)
      if (w[0] === "pnpm" && w[1] === "canopy") {
        if (isSlow(w)) {
          await parseCheck(expect, line, cwd)
        } else {
          const r = await sh(line, { cwd, timeoutMs: scaled(60_000) })
          expect(r.code, report(r)).toBe(0)
        }
      } else if (w[0] === "make") {
        const r = await sh(`make -n ${w.slice(1).join(" ")}`, { cwd: root, timeoutMs: scaled(10_000) })
        expect(r.code, report(r)).toBe(0)
      } else if (w[0] === "pnpm" && w[1] === "vitest" && w[2] === "run") {
        const r = await sh(`pnpm vitest list ${w.slice(3).join(" ")}`, { cwd: root, timeoutMs: scaled(60_000) })
        expect(r.code, report(r)).toBe(0)
        expect(r.stdout.trim(), `\`${line}\` selects no test:\n${report(r)}`).not.toBe("")
      } else if (w[0] === "scripts/gpu-pack.sh") {
        expect(statSync(join(root, w[0])).mode & 0o111, `${w[0]} is not executable`).not.toBe(0)
        const entries = w.slice(1).filter((a, k, all) => !a.startsWith("-") && all[k - 1] !== "--out")
        expect(entries.length, line).toBeGreaterThan(0)
        for (const entry of entries) {
          expect(existsSync(join(root, entry)), `${line}: no file ${entry}`).toBe(true)
          bundles.add(`${entry.replace(/^.*\//, "").replace(/\.[^.]*$/, "")}.mjs`)
        }
      } else if (w[0] === "bash" && w[1] === ".gpu/run.sh") {
        expect([...bundles], `${line}: no earlier pack line makes ${w[2]}`).toContain(w[2])
      } else if (w[0] === "echo") {
        const r = await sh(line, { cwd, timeoutMs: scaled(10_000) })
        expect(r.code, report(r)).toBe(0)
      } else {
        expect.fail(`no rule checks this line of ${doc}; add one to readme.test.ts: ${line}`)
      }
    }
  })

  it("every pnpm canopy command with flags quoted in the prose parses", async () => {
    const inShBlocks = new Set(shBlocks.flatMap((b) => b.split("\n")).map(stripComment))
    const quoted = new Set(
      collect<Tokens.Codespan>(tokens, "codespan").map((t) => t.text.trim())
        .filter((c) => c.startsWith("pnpm canopy ") && c.includes(" --") && !c.includes("…") && !inShBlocks.has(c))
    )
    for (const command of quoted) await parseCheck(expect, command, scratch)
  })

  it("every relative link leads to a file, and to a heading there", () => {
    const slug = (heading: string): string =>
      heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").trim().replace(/\s/g, "-")
    for (const link of collect<Tokens.Link>(tokens, "link")) {
      if (/^[a-z]+:/i.test(link.href)) continue
      const [path, anchor] = link.href.split("#") as [string, string | undefined]
      const target = path === "" ? docPath : resolve(dirname(docPath), path)
      expect(existsSync(target), `${doc} link ${link.href}: no ${target}`).toBe(true)
      if (anchor === undefined || anchor === "") continue
      const headings = marked.lexer(readFileSync(target, "utf8")).filter((t): t is Tokens.Heading => t.type === "heading")
      expect(headings.map((h) => slug(h.text)), `${doc} link ${link.href}: no such heading`).toContain(anchor)
    }
  })
})
