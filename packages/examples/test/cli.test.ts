import { ContextTooLong, InvalidEngineOptions, InvalidPromptTree, InvalidSampling, KvCacheOutOfMemory, NonFiniteLogits } from "@canopy/runtime"
import { NodeServices } from "@effect/platform-node"
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Cause, Effect, Exit } from "effect"
import { CliOutput, Command } from "effect/cli"
import { afterAll, describe, expect, it } from "vitest"
import { canopy as canopyCommand, VERSION } from "../src/cli/canopy.ts"
import { describeFailure, exitCodeOf } from "../src/cli/errors.ts"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const canopy = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    // spawnSync blocks the worker, so no vitest limit can fire while it runs: the child's own bound ends a hang
    timeout: scaled(60_000)
  })

/**
 * The command line run in this process: the help it showed, the flag errors
 * its parser reported, and what it failed with (what main.ts prints after
 * "canopy: ", and the exit code). No process start: these cases end before
 * anything is loaded.
 */
const inProcess = async (args: ReadonlyArray<string>) => {
  const help: Array<string> = []
  const flagErrors: Array<string> = []
  const formatter = CliOutput.defaultFormatter({ colors: false })
  const presenter = CliOutput.layerPresenter({
    present: (event) =>
      Effect.sync(() => {
        if (event._tag === "Help" || event._tag === "InvalidInvocation") help.push(formatter.formatHelpDoc(event.helpDoc))
        if (event._tag === "InvalidInvocation") flagErrors.push(...event.errors.map((e) => e.message))
      })
  })
  const exit = await Effect.runPromiseExit(
    Command.runWith(canopyCommand, { version: VERSION })(args).pipe(Effect.provide(presenter), Effect.provide(NodeServices.layer))
  )
  const failure = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
  return {
    help,
    flagErrors,
    failure: failure === undefined ? undefined : { message: describeFailure(failure), exitCode: exitCodeOf(failure) }
  }
}

const dir = mkdtempSync(join(tmpdir(), "canopy-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const goodTree = file("tree.json", JSON.stringify({ text: "Once, ", samples: 1 }))
const problem = JSON.stringify({ problem_id: 1, question: "Q", input_output: { inputs: ["1"], outputs: ["1"] } })

/**
 * A machine where acquiring the GPU fails (exit 1, "no WebGPU adapter found"),
 * and a model folder that does not exist: an input error seen with these was
 * found before anything was acquired or loaded.
 */
const NO_GPU = { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" }
const NO_MODEL = "/nonexistent/canopy-model"

const hasGpuNode = existsSync("/dev/nvidia0") || (existsSync("/dev/dri") && readdirSync("/dev/dri").some((n) => n.startsWith("renderD")))

describe("the command line's errors", () => {
  it("says what to install when no adapter can be found", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "software", VK_ICD_FILENAMES: "/nonexistent/icd.json" })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("no WebGPU adapter found")
    expect(r.stderr).toContain("apt-get install")
  })

  it.runIf(!hasGpuNode)("refuses to fall back when told to use hardware on a machine without a GPU", () => {
    const r = canopy(["adapter"], { CANOPY_ADAPTER: "hardware" })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain("no WebGPU adapter found")
  })

  it("rejects an unknown model preset with exit code 2, naming the presets", () => {
    const r = canopy(["sample", "--model", "synthetic:huge", "--samples", "1", "--quiet"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("tiny")
  })
})

describe("the command line checks its input before it acquires anything", () => {
  it("reports a missing tree, an empty problems file, an unwritable --out and a missing model folder with exit code 2, on a machine with no GPU", () => {
    const tree = canopy(["generate", "--model", NO_MODEL, "--tree", "/nonexistent/tree.json"], NO_GPU)
    expect([tree.status, tree.stderr]).toEqual([
      2,
      "canopy: --tree /nonexistent/tree.json: cannot read it: ENOENT: no such file or directory, open '/nonexistent/tree.json'\n"
    ])
    const blank = file("blank.jsonl", "\n  \n\n")
    const problems = canopy(["sample", "--model", NO_MODEL, "--problems", blank, "--quiet"], NO_GPU)
    expect([problems.status, problems.stderr]).toEqual([
      2,
      `canopy: ProblemFileError: ${blank} holds only blank lines (3): a problems file needs at least one problem, one APPS-style JSON record per line\n`
    ])
    // Node's recursive mkdir spins forever on /proc/x; the folder is made one level at a time
    const out = canopy(["sample", "--out", "/proc/canopy-out", "--quiet"], NO_GPU)
    expect([out.status, out.stderr]).toEqual([
      2,
      "canopy: --out /proc/canopy-out: cannot create the folder /proc/canopy-out: ENOENT: no such file or directory, mkdir '/proc/canopy-out'\n"
    ])
    // the model folder is checked before the GPU is opened (here opening it would fail: "no WebGPU adapter found", exit 1)
    const model = `canopy: ModelFileError: ${NO_MODEL}: model folder does not exist\n`
    const generate = canopy(["generate", "--model", NO_MODEL, "--tree", goodTree], NO_GPU)
    expect([generate.status, generate.stderr]).toEqual([2, model])
    const sample = canopy(["sample", "--model", NO_MODEL, "--out", join(dir, "sample-out"), "--quiet"], NO_GPU)
    expect([sample.status, sample.stderr]).toEqual([2, model])
  })

  it.each([
    [["--temperature", "-1"], `Invalid value for flag --temperature: "-1". Expected: --temperature must be at least 0 (0 is greedy), got -1`],
    [["--top-p", "2"], `Invalid value for flag --top-p: "2". Expected: --top-p must be in (0, 1] (more than 0, at most 1), got 2`],
    [["--top-p", "0"], `Invalid value for flag --top-p: "0". Expected: --top-p must be in (0, 1] (more than 0, at most 1), got 0`],
    [["--top-k", "-1"], `Invalid value for flag --top-k: "-1". Expected: --top-k must be at least 0 (0 is off), got -1`],
    [["--seed", "-1"], `Invalid value for flag --seed: "-1". Expected: --seed must be an integer from 0 to 4294967295 (2^32 - 1), got -1`],
    [["--seed", "4294967296"], `Invalid value for flag --seed: "4294967296". Expected: --seed must be an integer from 0 to 4294967295 (2^32 - 1), got 4294967296`],
    [["--max-tokens", "0"], `Invalid value for flag --max-tokens: "0". Expected: --max-tokens must be at least 1, got 0`],
    [["--max-batch", "65537"], `Invalid value for flag --max-batch: "65537". Expected: --max-batch must be at most 65536, got 65537`],
    [["--kv-memory", "1048577"], `Invalid value for flag --kv-memory: "1048577". Expected: --kv-memory must be at most 1048576 MiB (1 TiB), got 1048577`]
  ])("generate refuses %j as a flag error, before loading the model", async (flag, message) => {
    const r = await inProcess(["generate", "--model", NO_MODEL, "--tree", goodTree, ...flag])
    expect(r.flagErrors).toEqual([message])
  })

  it("sample refuses sampling flags the same way, and an empty --stop everywhere", async () => {
    expect((await inProcess(["sample", "--model", NO_MODEL, "--top-p", "1.5"])).flagErrors).toEqual([
      `Invalid value for flag --top-p: "1.5". Expected: --top-p must be in (0, 1] (more than 0, at most 1), got 1.5`
    ])
    const stop = await inProcess(["generate", "--model", NO_MODEL, "--tree", goodTree, "--stop", "a", "--stop", ""])
    expect(stop.flagErrors).toHaveLength(1)
    expect(stop.flagErrors[0]).toMatch(/--stop must not be empty: a stop string needs at least one character$/)
  })

  it("takes --kv-dtype f16 or f32 only, on generate, sample and serve", async () => {
    for (const command of [["generate", "--tree", goodTree], ["sample"], ["serve"]]) {
      const bad = await inProcess([command[0]!, "--model", NO_MODEL, ...command.slice(1), "--kv-dtype", "f64"])
      expect(bad.flagErrors, command[0]).toHaveLength(1)
      expect(bad.flagErrors[0]).toMatch(/--kv-dtype/)
      expect(bad.flagErrors[0]).toMatch(/f16/)
    }
    const good = await inProcess(["generate", "--model", NO_MODEL, "--tree", goodTree, "--kv-dtype", "f32"])
    expect(good.flagErrors).toEqual([])
  })

  it("names what is wrong with a tree file, before loading the model", async () => {
    const notJson = file("not.json", `{"text": "a", "samples":`)
    expect((await inProcess(["generate", "--model", NO_MODEL, "--tree", notJson])).failure).toEqual({
      message: `--tree ${notJson}: is not JSON: Unexpected end of JSON input`,
      exitCode: 2
    })
    const bad = file("bad.json", JSON.stringify({ text: "a", children: [{ text: "b", samples: -1 }] }))
    expect((await inProcess(["generate", "--model", NO_MODEL, "--tree", bad])).failure).toEqual({
      message: "InvalidPromptTree: prompt tree $.children[0].samples: must be a non-negative integer, got -1",
      exitCode: 2
    })
    // token ids are checked for shape here, against the vocabulary by the engine
    const token = file("token.json", JSON.stringify({ tokens: [1, 2.5], samples: 1 }))
    expect((await inProcess(["generate", "--model", NO_MODEL, "--tree", token])).failure?.exitCode).toBe(2)
  })

  it("names what is wrong with the problems, the sample count and the output folder, before loading the model", async () => {
    const missing = join(dir, "missing.jsonl")
    expect((await inProcess(["sample", "--model", NO_MODEL, "--problems", missing])).failure).toEqual({
      message: `ProblemFileError: ENOENT: no such file or directory, open '${missing}'`,
      exitCode: 2
    })
    const empty = file("empty.jsonl", "")
    expect((await inProcess(["sample", "--model", NO_MODEL, "--problems", empty])).failure).toEqual({
      message: `ProblemFileError: ${empty} is empty: a problems file needs at least one problem, one APPS-style JSON record per line`,
      exitCode: 2
    })
    const three = file("three.jsonl", [1, 2, 3].map((id) => problem.replace('"problem_id":1', `"problem_id":${id}`)).join("\n"))
    expect((await inProcess(["sample", "--model", NO_MODEL, "--problems", three, "--samples", "400000"])).failure).toEqual({
      message: "--samples 400000 for each of 3 problems asks for 1200000 samples; one run may ask for at most 1000000",
      exitCode: 2
    })
    expect((await inProcess(["sample", "--model", NO_MODEL, "--samples", "1000001"])).flagErrors).toEqual([
      `Invalid value for flag --samples: "1000001". Expected: --samples must be at most 1000000, got 1000001`
    ])
    const aFile = file("a-file", "")
    expect((await inProcess(["sample", "--model", "synthetic:huge", "--problems", three, "--out", join(aFile, "out")])).failure?.message)
      .toMatch(/^ModelConfigError: /)
    expect((await inProcess(["sample", "--problems", three, "--out", join(aFile, "out")])).failure).toEqual({
      message: `--out ${join(aFile, "out")}: ${aFile} is a file, not a folder`,
      exitCode: 2
    })
  })
})

describe("the engine's errors on the command line", () => {
  it("prints each with its tag, exit code 2 where the input asked for what cannot be had, 1 where the model is at fault", () => {
    const printed = (e: unknown) => ({ message: describeFailure(e), exitCode: exitCodeOf(e) })
    expect(printed(new InvalidEngineOptions({ field: "maxBatch", problem: "must be an integer from 1 to 65536, got 0" }))).toEqual({
      message: "InvalidEngineOptions: engine option maxBatch: must be an integer from 1 to 65536, got 0",
      exitCode: 2
    })
    expect(printed(new KvCacheOutOfMemory({ askedBytes: 2 ** 32, layers: 2, detail: "out of memory" }))).toEqual({
      message: "KvCacheOutOfMemory: the KV cache asked the device for 4.00 GiB (a K and a V pool for each of 2 layers) and the device " +
        "could not allocate it (out of memory); give it less memory: kvMemoryBytes, or --kv-memory MiB on the command line",
      exitCode: 2
    })
    expect(printed(new ContextTooLong({ path: [0], promptTokens: 100, maxTokens: 64, maxPositions: 128 }))).toEqual({
      message: "ContextTooLong: node [0]: a prompt of 100 tokens plus up to 64 new tokens exceeds the model's 128 positions " +
        "(max_position_embeddings); shorten the prompt or lower maxTokens to 28",
      exitCode: 2
    })
    expect(printed(new InvalidPromptTree({ path: "$.children[1]", problem: "must be an object" }))).toEqual({
      message: "InvalidPromptTree: prompt tree $.children[1]: must be an object",
      exitCode: 2
    })
    expect(printed(new InvalidSampling({ field: "topP", problem: "must be in (0, 1], got 2" }))).toEqual({
      message: "InvalidSampling: sampling topP: must be in (0, 1], got 2",
      exitCode: 2
    })
    expect(printed(new NonFiniteLogits({ path: [1], sample: 0, position: 7 }))).toEqual({
      message: "NonFiniteLogits: the model's logits are not finite (NaN or ±∞) for sample 0 of node [1] at position 7: " +
        "its weights or activations overflow or are NaN, so no token can be drawn",
      exitCode: 1
    })
  })

  it("reports a KV cache the software adapter cannot allocate as KvCacheOutOfMemory on standard error, exit code 2", () => {
    // 1 TiB, the most --kv-memory takes: the engine asks for as much as one pool can bind, more than SwiftShader allocates
    const r = canopy(["generate", "--tree", goodTree, "--max-tokens", "1", "--kv-memory", "1048576"], { CANOPY_ADAPTER: "software" })
    expect(r.stdout).toBe("")
    expect(r.stderr).toMatch(/^canopy: KvCacheOutOfMemory: the KV cache asked the device for [\d.]+ GiB .*--kv-memory MiB on the command line\n$/)
    expect(r.status).toBe(2)
  })
})

describe("canopy help", () => {
  it("prints the same help as --help, for canopy and for a subcommand", async () => {
    const root = await inProcess(["help"])
    expect(root.help).toEqual((await inProcess(["--help"])).help)
    expect(root.help[0]).toContain("help         Show the help of canopy or of a subcommand")
    expect((await inProcess(["help", "bench", "attention"])).help).toEqual((await inProcess(["bench", "attention", "--help"])).help)
    const generate = (await inProcess(["generate", "--help"])).help
    expect(generate).toHaveLength(1)
    const r = canopy(["help", "generate"])
    expect(r.status).toBe(0)
    expect(r.stdout).toBe(`${generate[0]}\n`)
    // the tree format, with an example
    expect(r.stdout).toContain(`    "samples": N         completions of the prompt that ends at this node (default 0)\n`)
    expect(r.stdout).toContain(`    {"text": "You answer in one word.\\n",\n`)
  })
})

describe("canopy generate's progress", () => {
  it("counts samples (no problems) as they finish, and ends on the summary's own tokens/s", () => {
    const tree = file("three.json", JSON.stringify({ text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }))
    const r = canopy(["generate", "--tree", tree, "--max-tokens", "4", "--seed", "1"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).not.toContain("problems")
    const done = /^done: samples 3\/3, tokens (\d+), ([\d.]+) tokens\/s$/m.exec(r.stderr)
    const summary = /^3 samples, (\d+) tokens in [\d.]+ s \(([\d.]+) tokens\/s;/m.exec(r.stdout)
    expect(done, r.stderr).not.toBeNull()
    expect(summary, r.stdout).not.toBeNull()
    // one formula (generated tokens over the run's wall time) on one set of figures: the same digits
    expect([done![1], done![2]]).toEqual([summary![1], summary![2]])
    expect(r.stderr.trimEnd().split("\n").at(-1)).toBe(done![0])
  })
})

describe("canopy generate --stream", () => {
  it("prints tokens as they come, each completion, then the stats, as JSON lines that agree with --json (and with --no-overlap)", async () => {
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises")
    const { tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const dir = await mkdtemp(join(tmpdir(), "canopy-stream-"))
    try {
      const tree = join(dir, "tree.json")
      await writeFile(tree, JSON.stringify({ text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }))
      const args = ["generate", "--tree", tree, "--max-tokens", "5", "--temperature", "0.9", "--seed", "3"]
      const streamed = canopy([...args, "--stream"])
      expect(streamed.status, streamed.stderr).toBe(0)
      const events = streamed.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
      expect(events.at(-1)!["event"]).toBe("done")
      const completions = events.filter((e) => e["event"] === "completion")
      expect(completions).toHaveLength(3)
      const whole = JSON.parse(canopy([...args, "--json"]).stdout) as { completions: Array<Record<string, unknown>> }
      const key = (c: Record<string, unknown>) => `${String(c["path"])}#${String(c["sample"])}`
      const sorted = [...completions].sort((a, b) => key(a).localeCompare(key(b)))
      expect(sorted.map(({ event: _, ...c }) => c)).toEqual([...whole.completions].sort((a, b) => key(a).localeCompare(key(b))))
      // stepwise decoding (each step read back before the next is planned) gives the same completions
      const stepwise = canopy([...args, "--json", "--no-overlap"])
      expect(stepwise.status, stepwise.stderr).toBe(0)
      expect((JSON.parse(stepwise.stdout) as typeof whole).completions).toEqual(whole.completions)
      // every completion's tokens arrived one event at a time, in order, before it
      for (const c of completions) {
        const at = events.indexOf(c)
        const tokens = events.slice(0, at).filter((e) => e["event"] === "token" && key(e) === key(c)).map((e) => e["token"])
        expect(tokens).toEqual(c["tokens"])
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
