/**
 * What `canopy bench serve` runs (the command and its help are in ../../bench/serve.ts).
 */
import { Engine, type TreeEngine } from "@canopy/runtime"
import { CanopyServer, type CanopyServerService } from "@canopy/server"
import { setMaxListeners } from "node:events"
import { writeFile } from "node:fs/promises"
import { Console, Data, Effect, Layer, Option } from "effect"
import { BUILTIN_PROBLEMS } from "../../../pipeline/data/builtin-problems.ts"
import { FEW_SHOT_PROMPT } from "../../../pipeline/prompt.ts"
import { modelStack } from "../../../sampling/stack.ts"
import { progressLine } from "../../../terminal/progressLine.ts"
import type { BenchServeFlags } from "../../bench/serve.ts"
import { kvOptions } from "../../flags.ts"

/** The run found a request answered wrongly, or sequences still live after it. */
export class ServeBenchCheckFailed extends Data.TaggedError("ServeBenchCheckFailed")<{ readonly problems: ReadonlyArray<string> }> {
  override get message(): string {
    return `the load run failed its checks:\n  ${this.problems.slice(0, 20).join("\n  ")}${this.problems.length > 20 ? `\n  … and ${this.problems.length - 20} more` : ""}`
  }
}

interface Plan {
  readonly index: number
  readonly chat: boolean
  readonly stream: boolean
  readonly cancel: boolean
  readonly n: number
  readonly body: Record<string, unknown>
}

type Outcome =
  | { readonly kind: "ok"; readonly plan: Plan; readonly ttftMs: number | undefined; readonly itlMs: ReadonlyArray<number>; readonly tokens: number }
  | { readonly kind: "cancelled"; readonly plan: Plan }
  | { readonly kind: "error"; readonly plan: Plan; readonly status: number; readonly code: string }
  | { readonly kind: "malformed"; readonly plan: Plan; readonly problem: string }

/** The q-quantile of `xs` (nearest rank), NaN for none. */
export const percentile = (xs: ReadonlyArray<number>, q: number): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

/** Request i of the run: the mix is fixed by i, so two runs send the same requests. */
const planOf = (index: number, model: string, maxTokens: number): Plan => {
  const problem = BUILTIN_PROBLEMS[index % BUILTIN_PROBLEMS.length]!
  const chat = index % 4 === 1
  const stream = index % 2 === 0
  const cancel = index % 7 === 3
  const n = 1 + (index % 3)
  const question = `\nQUESTION:\n${problem.question}\nANSWER:\n`
  const common = { model, n, max_tokens: maxTokens, temperature: 0.8, seed: index, stream }
  const body = chat
    ? { ...common, messages: [{ role: "system", content: FEW_SHOT_PROMPT }, { role: "user", content: question }] }
    : { ...common, prompt: FEW_SHOT_PROMPT + question }
  return { index, chat, stream, cancel, n, body }
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

/** Is this OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`? Returns its code. */
const errorCode = (body: unknown): string | undefined => {
  if (!isRecord(body) || !isRecord(body["error"])) return undefined
  const e = body["error"]
  const ok = typeof e["message"] === "string" && typeof e["type"] === "string" &&
    (e["param"] === null || typeof e["param"] === "string") && (e["code"] === null || typeof e["code"] === "string")
  return ok ? String(e["code"] ?? e["type"]) : undefined
}

/** Every index 0..n-1 once, each with a finish reason. */
const checkChoices = (choices: ReadonlyArray<{ index: number; finish: unknown }>, n: number): string | undefined => {
  const seen = new Set<number>()
  for (const c of choices) {
    if (!Number.isInteger(c.index) || c.index < 0 || c.index >= n) return `choice index ${c.index} outside 0..${n - 1}`
    if (seen.has(c.index)) return `choice ${c.index} twice`
    if (c.finish !== "stop" && c.finish !== "length") return `choice ${c.index} finished with ${JSON.stringify(c.finish)}`
    seen.add(c.index)
  }
  return seen.size === n ? undefined : `${seen.size} choices for n = ${n}`
}

/** Sends one request and judges its answer. */
const runOne = async (url: string, plan: Plan, deadline: AbortSignal): Promise<Outcome> => {
  const controller = new AbortController()
  const onDeadline = () => controller.abort()
  deadline.addEventListener("abort", onDeadline)
  const started = performance.now()
  // A non-streaming request that cancels does so while it waits or decodes.
  const timer = plan.cancel && !plan.stream ? setTimeout(() => controller.abort(), 150) : undefined
  try {
    const response = await fetch(`${url}${plan.chat ? "/v1/chat/completions" : "/v1/completions"}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(plan.body),
      signal: controller.signal
    })
    if (response.status !== 200) {
      const code = errorCode(await response.json().catch(() => undefined))
      if (code === undefined) return { kind: "malformed", plan, problem: `status ${response.status} without OpenAI's error object` }
      if ((response.status === 429 || response.status === 503) && response.headers.get("retry-after") === null) {
        return { kind: "malformed", plan, problem: `status ${response.status} without Retry-After` }
      }
      return { kind: "error", plan, status: response.status, code }
    }
    if (!plan.stream) {
      const body = (await response.json()) as { choices?: Array<Record<string, unknown>>; usage?: { completion_tokens?: unknown } }
      const choices = (body.choices ?? []).map((c) => ({ index: c["index"] as number, finish: c["finish_reason"] }))
      const problem = checkChoices(choices, plan.n)
      if (problem !== undefined) return { kind: "malformed", plan, problem }
      const tokens = body.usage?.completion_tokens
      if (typeof tokens !== "number") return { kind: "malformed", plan, problem: "no usage.completion_tokens" }
      return { kind: "ok", plan, ttftMs: undefined, itlMs: [], tokens }
    }
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    let done = false
    let ttft: number | undefined
    const last = new Map<number, number>()
    const itl: Array<number> = []
    const finished: Array<{ index: number; finish: unknown }> = []
    let tokens = 0
    let streamError: string | undefined
    while (!done) {
      const { value, done: end } = await reader.read()
      if (end) break
      buffer += decoder.decode(value, { stream: true })
      let cut: number
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut)
        buffer = buffer.slice(cut + 2)
        if (!event.startsWith("data: ")) continue
        const data = event.slice(6)
        if (data === "[DONE]") {
          done = true
          break
        }
        const chunk = JSON.parse(data) as unknown
        if (isRecord(chunk) && "error" in chunk) {
          streamError = errorCode(chunk) ?? "malformed error event"
          continue
        }
        const choices = (isRecord(chunk) && Array.isArray(chunk["choices"]) ? chunk["choices"] : []) as Array<Record<string, unknown>>
        for (const c of choices) {
          const index = c["index"] as number
          const text = plan.chat ? (c["delta"] as { content?: string } | undefined)?.content ?? "" : (c["text"] as string | undefined) ?? ""
          const now = performance.now()
          if (text.length > 0) {
            tokens++
            ttft ??= now - started
            const before = last.get(index)
            if (before !== undefined) itl.push(now - before)
            last.set(index, now)
            if (plan.cancel && tokens === 2) controller.abort()
          }
          if (c["finish_reason"] !== null && c["finish_reason"] !== undefined) finished.push({ index, finish: c["finish_reason"] })
        }
      }
    }
    if (streamError !== undefined) return { kind: "error", plan, status: 200, code: streamError }
    if (!done) return { kind: "malformed", plan, problem: "the stream ended without data: [DONE]" }
    const problem = checkChoices(finished, plan.n)
    if (problem !== undefined) return { kind: "malformed", plan, problem }
    return { kind: "ok", plan, ttftMs: ttft, itlMs: itl, tokens }
  } catch (e) {
    if (controller.signal.aborted) return { kind: "cancelled", plan }
    return { kind: "malformed", plan, problem: `request failed: ${e instanceof Error ? `${e.message}${e.cause ? ` (${String(e.cause)})` : ""}` : String(e)}` }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
    deadline.removeEventListener("abort", onDeadline)
  }
}

export interface ServeBenchReport {
  readonly model: string
  readonly clients: number
  readonly requests: number
  readonly sent: number
  readonly seconds: number
  readonly completed: number
  readonly cancelled: number
  readonly errors: Readonly<Record<string, number>>
  readonly malformed: ReadonlyArray<string>
  readonly requestsPerSecond: number
  readonly completionTokensPerSecond: number
  readonly ttftMs: { readonly p50: number; readonly p99: number; readonly n: number }
  readonly itlMs: { readonly p50: number; readonly p99: number; readonly n: number }
  readonly prefixCache: { readonly hitTokens: number; readonly prefillTokens: number; readonly hitRate: number }
  readonly afterRun: {
    readonly liveSequences: number
    readonly runningRequests: number
    readonly waitingRequests: number
    /** KV blocks in use that no unlocked cached node holds: 0 when every block left is evictable cache */
    readonly blocksBeyondCache: number
  }
}

const runLoad = async (
  server: CanopyServerService, engine: TreeEngine,
  options: { readonly clients: number; readonly requests: number; readonly seconds: number; readonly maxTokens: number },
  onProgress: (done: number) => void
): Promise<ServeBenchReport> => {
  const reusedBefore = server.metrics.reusedTokens
  const prefillBefore = server.metrics.prefillTokens
  const deadline = new AbortController()
  // Every request in flight listens for the deadline.
  setMaxListeners(options.clients + 10, deadline.signal)
  const timer = setTimeout(() => deadline.abort(), options.seconds * 1000)
  const outcomes: Array<Outcome> = []
  let next = 0
  const started = performance.now()
  const client = async () => {
    while (next < options.requests && !deadline.signal.aborted) {
      const plan = planOf(next++, server.modelId, options.maxTokens)
      outcomes.push(await runOne(server.url, plan, deadline.signal))
      onProgress(outcomes.length)
    }
  }
  await Promise.all(Array.from({ length: options.clients }, client))
  clearTimeout(timer)
  const seconds = (performance.now() - started) / 1000
  // Cancelled requests stop at the engine's next step: wait for the line to empty before judging what is left.
  const settle = performance.now()
  const live = () => engine.kv.tree.stats().liveSequences
  while ((server.scheduler.stats().runningRequests > 0 || server.scheduler.stats().waitingRequests > 0 || live() > 0) && performance.now() - settle < 60_000) {
    await new Promise((r) => setTimeout(r, 50))
  }
  const ok = outcomes.filter((o): o is Extract<Outcome, { kind: "ok" }> => o.kind === "ok")
  const errors: Record<string, number> = {}
  for (const o of outcomes) if (o.kind === "error") errors[`${o.status} ${o.code}`] = (errors[`${o.status} ${o.code}`] ?? 0) + 1
  const ttft = ok.flatMap((o) => (o.ttftMs !== undefined ? [o.ttftMs] : []))
  const itl = ok.flatMap((o) => o.itlMs)
  const hitTokens = server.metrics.reusedTokens - reusedBefore
  const prefillTokens = server.metrics.prefillTokens - prefillBefore
  const q = server.scheduler.stats()
  const tree = engine.kv.tree.stats()
  return {
    model: server.modelId,
    clients: options.clients,
    requests: options.requests,
    sent: outcomes.length,
    seconds,
    completed: ok.length,
    cancelled: outcomes.filter((o) => o.kind === "cancelled").length,
    errors,
    malformed: outcomes.flatMap((o) => (o.kind === "malformed" ? [`request ${o.plan.index}: ${o.problem}`] : [])),
    requestsPerSecond: ok.length / seconds,
    completionTokensPerSecond: ok.reduce((n, o) => n + o.tokens, 0) / seconds,
    ttftMs: { p50: percentile(ttft, 0.5), p99: percentile(ttft, 0.99), n: ttft.length },
    itlMs: { p50: percentile(itl, 0.5), p99: percentile(itl, 0.99), n: itl.length },
    prefixCache: { hitTokens, prefillTokens, hitRate: hitTokens + prefillTokens > 0 ? hitTokens / (hitTokens + prefillTokens) : 0 },
    afterRun: {
      liveSequences: tree.liveSequences,
      runningRequests: q.runningRequests,
      waitingRequests: q.waitingRequests,
      blocksBeyondCache: tree.blocksUsed - tree.evictableBlocks
    }
  }
}

const ms = (x: number): string => (Number.isFinite(x) ? (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`) : "—")

export const formatServeBench = (r: ServeBenchReport): ReadonlyArray<string> => {
  const errors = Object.entries(r.errors).map(([k, n]) => `${n} × ${k}`).join(", ")
  return [
    `model ${r.model}; ${r.clients} clients, ${r.sent} of ${r.requests} requests sent in ${r.seconds.toFixed(1)} s`,
    `answered: ${r.completed} with all their n choices, ${r.cancelled} cancelled by the client, ` +
    `${Object.values(r.errors).reduce((a, b) => a + b, 0)} well-formed errors${errors ? ` (${errors})` : ""}, ${r.malformed.length} malformed`,
    `throughput: ${r.requestsPerSecond.toFixed(2)} requests/s, ${r.completionTokensPerSecond.toFixed(1)} completion tokens/s`,
    `time to first token (streamed, ${r.ttftMs.n}): p50 ${ms(r.ttftMs.p50)}, p99 ${ms(r.ttftMs.p99)}`,
    `inter-token latency (${r.itlMs.n} gaps): p50 ${ms(r.itlMs.p50)}, p99 ${ms(r.itlMs.p99)}`,
    `prefix cache: ${r.prefixCache.hitTokens} prompt tokens found cached, ${r.prefixCache.prefillTokens} prefilled ` +
    `(hit rate ${(100 * r.prefixCache.hitRate).toFixed(1)} %)`,
    `after the run: ${r.afterRun.liveSequences} live sequences, ${r.afterRun.runningRequests} running, ${r.afterRun.waitingRequests} waiting, ` +
    `${r.afterRun.blocksBeyondCache} KV blocks used beyond the evictable cache`
  ]
}

export const run = (flags: BenchServeFlags) =>
  Effect.gen(function*() {
    const server = yield* CanopyServer
    const { engine } = yield* Engine
    const requests = Option.getOrElse(flags.requests, () => flags.clients)
    const line = progressLine()
    const report = yield* Effect.promise(() =>
      runLoad(server, engine, { clients: flags.clients, requests, seconds: flags.seconds, maxTokens: flags.maxTokens }, (done) =>
        line.update(`${done}/${requests} requests answered`)
      )
    )
    line.end()
    for (const row of formatServeBench(report)) yield* Console.log(row)
    const json = flags.json
    if (Option.isSome(json)) yield* Effect.promise(() => writeFile(json.value, JSON.stringify(report, null, 2)))
    const problems = [
      ...report.malformed,
      ...(report.afterRun.liveSequences > 0 ? [`${report.afterRun.liveSequences} sequences still live after the run`] : []),
      ...(report.afterRun.runningRequests + report.afterRun.waitingRequests > 0 ? ["requests still in the server after the run"] : []),
      ...(report.afterRun.blocksBeyondCache !== 0 ? [`${report.afterRun.blocksBeyondCache} KV blocks still used beyond the cache after the run`] : [])
    ]
    if (problems.length > 0) return yield* Effect.fail(new ServeBenchCheckFailed({ problems }))
  }).pipe(
    Effect.provide(
      CanopyServer.layer({
        host: "127.0.0.1",
        port: 0,
        maxWaiting: Option.getOrElse(flags.maxWaiting, () => flags.clients),
        concurrency: flags.maxRunning
      }).pipe(
        Layer.provideMerge(Engine.layer(kvOptions(flags.kvMemory))),
        Layer.provideMerge(modelStack(flags.model, 0, Option.getOrUndefined(flags.dtype)))
      )
    )
  )
