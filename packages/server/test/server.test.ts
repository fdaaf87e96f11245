/**
 * The server in this process, on a free loopback port, over a small synthetic
 * model, driven by the official `openai` client (and plain fetch and sockets
 * for what a well-behaved client never sends). Greedy results are compared
 * exactly with the engine's own `generate` on the same tokens.
 */
import { Engine, Gpu, Model, type ModelConfig, type TreeEngine } from "@canopy/runtime"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import {
  BUILTIN_TEMPLATE, CanopyServer, type CanopyServerService, ChatTemplateError, ChatTemplateLoadError, compileChatTemplate, loadChatTemplate, retokenizeTree,
  StreamText
} from "../src/index.ts"

declare module "vitest" {
  export interface ProvidedContext {
    readonly timeoutScale: number
  }
}

/** A wait of `ms` on a quiet machine, stretched for a loaded one: it ends a hang, it never judges speed. */
const scaled = (ms: number): number => Math.round(ms * inject("timeoutScale"))

// Byte-level, small and fast: 258 byte ids (BOS 256, EOS 257) and room for "max_tokens over the context".
const config: ModelConfig = {
  architecture: "LlamaForCausalLM", hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8,
  rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: { type: "none" }, vocabSize: 260, tieWordEmbeddings: false, attentionBias: false,
  maxPositionEmbeddings: 1024, bosTokenId: 256, eosTokenIds: [257]
}
const MODEL = "test-model"

const engineStack = Engine.layer({ blockSize: 16, kvBlocks: 1024 }).pipe(
  Layer.provideMerge(Model.layer({ kind: "synthetic", model: config, seed: 7 })),
  Layer.provideMerge(Gpu.layer())
)

let scope: Scope.Closeable
let engineContext: Context.Context<Engine | Model | Gpu>
let server: CanopyServerService
let engineService: Engine["Service"]
let engine: TreeEngine
let client: OpenAI

/** Another server over the same engine, with its own options; closed by the caller (or at the end). */
const startServer = async (options: Parameters<typeof CanopyServer.layer>[0]) => {
  const own = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(Layer.buildWithScope(CanopyServer.layer({ port: 0, modelId: MODEL, ...options }), own).pipe(
    Effect.provide(engineContext)
  ))
  return { server: Context.get(ctx, CanopyServer), close: () => Effect.runPromise(Scope.close(own, Exit.void)) }
}

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  engineContext = await Effect.runPromise(Layer.buildWithScope(engineStack, scope))
  engineService = Context.get(engineContext, Engine)
  engine = engineService.engine
  const ctx = await Effect.runPromise(
    Layer.buildWithScope(CanopyServer.layer({ port: 0, modelId: MODEL }), scope).pipe(Effect.provide(engineContext))
  )
  server = Context.get(ctx, CanopyServer)
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: scaled(60_000) })
})
afterAll(async () => {
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
})

const live = () => engine.kv.tree.stats().liveSequences

/** Waits until `check` holds, polling; fails after a generous, scaled limit. */
const until = async (what: string, check: () => boolean, ms = 30_000): Promise<void> => {
  const deadline = Date.now() + scaled(ms)
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The engine's greedy run of one tree, from an empty cache (as the server's run is started from one too). */
const engineGreedy = async (tree: Parameters<TreeEngine["generate"]>[0]["tree"], maxTokens: number) => {
  engine.clearCache()
  return Effect.runPromise(engineService.generate({ tree, sampling: { temperature: 0, maxTokens, seed: 0 } }))
}

const post = (path: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init
  })

/** An error response: its status and OpenAI's error object. */
const errorOf = async (response: Response) => {
  const body = (await response.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }
  expect(Object.keys(body)).toEqual(["error"])
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"])
  return { status: response.status, ...body.error }
}

const bytes = (text: string) => Array.from(new TextEncoder().encode(text))

/** A printable ASCII character of `text` at or after `from`, to use as a stop string that decodes the same however the text is cut. */
const asciiAfter = (text: string, from: number): string => {
  for (let i = from; i < text.length; i++) if (/[ -~]/.test(text[i]!)) return text[i]!
  throw new Error(`no printable ASCII character after ${from} in ${JSON.stringify(text)}`)
}

describe("completions through the openai client", () => {
  it("equal the engine's greedy generate for the same prompt tokens", async () => {
    const prompt = "The quick brown fox"
    engine.clearCache()
    const got = await client.completions.create({ model: MODEL, prompt, max_tokens: 12, temperature: 0 })
    const want = await engineGreedy({ tokens: [256, ...bytes(prompt)], samples: 1 }, 12)
    expect(got.object).toBe("text_completion")
    expect(got.model).toBe(MODEL)
    expect(got.choices).toHaveLength(1)
    expect(got.choices[0]!.text).toBe(want.completions[0]!.text)
    expect(got.choices[0]!.finish_reason).toBe(want.completions[0]!.finishReason === "length" ? "length" : "stop")
    expect(got.usage).toMatchObject({ prompt_tokens: prompt.length + 1, completion_tokens: want.completions[0]!.tokens.length })
    // The same prompt as token ids gives the same completion.
    engine.clearCache()
    const byIds = await client.completions.create({ model: MODEL, prompt: [256, ...bytes(prompt)], max_tokens: 12, temperature: 0 })
    expect(byIds.choices[0]!.text).toBe(want.completions[0]!.text)
  })

  it("send several prompts with n samples each as one tree: a root with their shared prefix, one child per prompt", async () => {
    const prompts = ["Once upon a time", "Once upon a hill"]
    engine.clearCache()
    const got = await client.completions.create({ model: MODEL, prompt: prompts, n: 2, max_tokens: 6, temperature: 0 })
    const shared = [256, ...bytes("Once upon a ")]
    const want = await engineGreedy({
      tokens: shared,
      children: [{ tokens: bytes("time"), samples: 2 }, { tokens: bytes("hill"), samples: 2 }]
    }, 6)
    expect(got.choices.map((c) => c.index)).toEqual([0, 1, 2, 3])
    expect(got.choices.map((c) => c.text)).toEqual(want.completions.map((c) => c.text))
    // The shared prefix is prefilled once: the second prompt finds it cached.
    expect(got.usage!.prompt_tokens).toBe(2 * (prompts[0]!.length + 1))
    expect((got.usage as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details?.cached_tokens).toBe(shared.length)
    expect(live()).toBe(0)
  })

  it("sample n different completions with a temperature, reproducibly for a seed", async () => {
    const ask = () => {
      engine.clearCache()
      return client.completions.create({ model: MODEL, prompt: "Seeds", n: 4, max_tokens: 8, temperature: 1, seed: 11 })
    }
    const a = await ask()
    const b = await ask()
    expect(a.choices).toHaveLength(4)
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text))
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1)
  })

  it("echo the prompt, cut at a stop string, and give logprobs that match the tokens", async () => {
    engine.clearCache()
    const plain = await client.completions.create({ model: MODEL, prompt: "Echo", max_tokens: 16, temperature: 0 })
    const text = plain.choices[0]!.text
    // A stop string taken from the middle of the greedy text: generation ends before its first occurrence.
    const stop = asciiAfter(text, 4)
    engine.clearCache()
    const stopped = await client.completions.create({ model: MODEL, prompt: "Echo", max_tokens: 16, temperature: 0, stop: [stop], echo: true })
    expect(stopped.choices[0]!.text).toBe(`Echo${text.slice(0, text.indexOf(stop))}`)
    expect(stopped.choices[0]!.finish_reason).toBe("stop")
    const withLogprobs = await client.completions.create({ model: MODEL, prompt: "Echo", max_tokens: 16, temperature: 0, logprobs: 3 })
    const lp = withLogprobs.choices[0]!.logprobs!
    expect(lp.tokens!.join("")).toBe(withLogprobs.choices[0]!.text)
    expect(lp.token_logprobs).toHaveLength(lp.tokens!.length)
    for (let i = 0; i < lp.tokens!.length; i++) {
      const top = lp.top_logprobs![i]!
      const values = Object.values(top)
      expect(values.length).toBeGreaterThanOrEqual(1)
      // Greedy: the drawn token is the likeliest one.
      expect(lp.token_logprobs![i]).toBeCloseTo(Math.max(...values), 5)
      expect(lp.token_logprobs![i]!).toBeLessThan(0)
    }
  })

  it("stream chunks that add up to the non-streamed text, then usage and [DONE]", async () => {
    const params = { model: MODEL, prompt: "Stream me", max_tokens: 12, temperature: 0, n: 2 }
    engine.clearCache()
    const whole = await client.completions.create(params)
    const stop = asciiAfter(whole.choices[0]!.text, 6)
    engine.clearCache()
    const stopped = await client.completions.create({ ...params, stop })
    expect(stopped.choices[0]!.text).toBe(whole.choices[0]!.text.slice(0, whole.choices[0]!.text.indexOf(stop)))
    for (const [expected, extra] of [[whole, {}], [stopped, { stop }]] as const) {
      engine.clearCache()
      const stream = await client.completions.create({ ...params, ...extra, stream: true, stream_options: { include_usage: true } })
      const texts = ["", ""]
      const reasons: Array<string | null> = [null, null]
      let usage: OpenAI.CompletionUsage | undefined
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage
        for (const c of chunk.choices) {
          texts[c.index] += c.text
          if (c.finish_reason !== null) reasons[c.index] = c.finish_reason
        }
      }
      expect(texts).toEqual(expected.choices.map((c) => c.text))
      expect(reasons).toEqual(expected.choices.map((c) => c.finish_reason))
      expect(usage?.completion_tokens).toBe(expected.usage!.completion_tokens)
    }
    // The raw stream ends with data: [DONE].
    const raw = await (await post("/v1/completions", { ...params, stream: true })).text()
    expect(raw.trimEnd().endsWith("data: [DONE]")).toBe(true)
  })
})

describe("chat completions", () => {
  it("render messages with the template and complete them, n at a time, streamed or not", async () => {
    const messages = [{ role: "system" as const, content: "Be brief." }, { role: "user" as const, content: "Hello" }]
    engine.clearCache()
    const got = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, n: 2 })
    const rendered = compileChatTemplate(BUILTIN_TEMPLATE, "built-in").render(messages)
    expect(rendered).toBe("<|system|>\nBe brief.\n<|user|>\nHello\n<|assistant|>\n")
    const want = await engineGreedy({ tokens: [256, ...bytes(rendered)], samples: 2 }, 8)
    expect(got.object).toBe("chat.completion")
    expect(got.choices.map((c) => c.message.content)).toEqual(want.completions.map((c) => c.text))
    expect(got.choices.map((c) => c.message.role)).toEqual(["assistant", "assistant"])
    expect(got.usage!.prompt_tokens).toBe(rendered.length + 1)
    engine.clearCache()
    const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, n: 2, stream: true })
    const texts = ["", ""]
    const roles: Array<string | undefined> = [undefined, undefined]
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? ""
        roles[c.index] ??= c.delta.role
      }
    }
    expect(texts).toEqual(want.completions.map((c) => c.text))
    expect(roles).toEqual(["assistant", "assistant"])
  })

  it("give token logprobs when asked", async () => {
    const got = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2
    })
    const content = got.choices[0]!.logprobs!.content!
    expect(content.map((t) => t.token).join("")).toBe(got.choices[0]!.message.content)
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(2)
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]!.logprob, 5)
    }
  })
})

describe("cancellation", () => {
  it("a streaming client that aborts stops its request: nothing stays live, and the next request runs", async () => {
    const before = server.metrics.generatedTokens
    const controller = new AbortController()
    const stream = await client.completions.create(
      { model: MODEL, prompt: "A long story", max_tokens: 900, temperature: 0, stream: true, ignore_eos: true } as never,
      { signal: controller.signal }
    ) as unknown as AsyncIterable<OpenAI.Completion>
    let chunks = 0
    // The client ends the stream quietly or with an abort error, depending on where the abort finds it.
    await (async () => {
      for await (const _ of stream) {
        if (++chunks === 3) {
          controller.abort()
          break
        }
      }
    })().catch((e: unknown) => expect(e).toBeInstanceOf(OpenAI.APIUserAbortError))
    expect(chunks).toBe(3)
    await until("the request has stopped", () => server.scheduler.stats().runningRequests === 0 && live() === 0)
    expect(server.metrics.generatedTokens - before).toBeLessThan(900)
    const next = await client.completions.create({ model: MODEL, prompt: "After", max_tokens: 3, temperature: 0 })
    expect(next.choices).toHaveLength(1)
    expect(live()).toBe(0)
  })

  it("a non-streaming client that aborts stops its request too", async () => {
    const before = server.metrics.generatedTokens
    const controller = new AbortController()
    const pending = client.completions.create(
      { model: MODEL, prompt: "Another long story", max_tokens: 900, n: 3, temperature: 0.5, ignore_eos: true } as never,
      { signal: controller.signal }
    )
    await until("it is decoding", () => server.metrics.generatedTokens > before + 6)
    controller.abort()
    await expect(pending).rejects.toThrow()
    await until("the request has stopped", () => server.scheduler.stats().runningRequests === 0 && live() === 0)
    expect(server.metrics.generatedTokens - before).toBeLessThan(3 * 900)
  })
})

describe("malformed requests", () => {
  it("bad JSON, wrong types, n = 0, unknown fields and max_tokens past the context are 400s naming the field", async () => {
    expect(await errorOf(await post("/v1/completions", "{\"model\": "))).toMatchObject({ status: 400, code: "invalid_json", type: "invalid_request_error" })
    expect(await errorOf(await post("/v1/completions", "[1, 2]"))).toMatchObject({ status: 400, code: "invalid_json" })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: 5 }))).toMatchObject({ status: 400, param: "prompt" })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: "x", max_tokens: "ten" }))).toMatchObject({
      status: 400, param: "max_tokens", message: "max_tokens: must be an integer, got \"ten\""
    })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: "x", n: 0 }))).toMatchObject({
      status: 400, param: "n", message: "n: must be from 1 to 128, got 0"
    })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: "x", temperature: -1 }))).toMatchObject({ status: 400, param: "temperature" })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: "x", max_token: 5, colour: 1 }))).toMatchObject({
      status: 400, param: "max_token", code: "unknown_parameter", message: "max_token: unknown fields \"max_token\", \"colour\""
    })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: [[1, 2], [300]] }))).toMatchObject({ status: 400, param: "prompt[1][0]" })
    expect(await errorOf(await post("/v1/completions", { model: MODEL, prompt: "Hello", max_tokens: 1020 }))).toMatchObject({
      status: 400, param: "max_tokens", code: "context_length_exceeded"
    })
    expect(await errorOf(await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "wizard", content: "x" }] }))).toMatchObject({
      status: 400, param: "messages[0].role"
    })
    expect(await errorOf(await post("/v1/chat/completions", { model: MODEL, messages: [], max_tokens: 2 }))).toMatchObject({ status: 400, param: "messages" })
    // Nothing was queued for any of them.
    expect(server.scheduler.stats()).toEqual({ runningRequests: 0, waitingRequests: 0, runningSequences: 0, waitingSequences: 0 })
  })

  it("the openai client sees them as BadRequestError, an unknown model as NotFoundError", async () => {
    await expect(client.completions.create({ model: MODEL, prompt: "x", n: 0 })).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    await expect(client.completions.create({ model: MODEL, prompt: "x", max_tokens: 5000 })).rejects.toMatchObject({
      status: 400, code: "context_length_exceeded", param: "max_tokens"
    })
    await expect(client.completions.create({ model: "gpt-4", prompt: "x" })).rejects.toMatchObject({ status: 404, code: "model_not_found", param: "model" })
  })

  it("an unknown route is a 404 in OpenAI's shape", async () => {
    expect(await errorOf(await fetch(`${server.url}/v1/embeddings`, { method: "POST", body: "{}" }))).toMatchObject({ status: 404, code: "not_found" })
    expect(await errorOf(await fetch(`${server.url}/v1/completions`))).toMatchObject({ status: 404 })
  })

  it("a 10 MB body is a 413, and the server still answers", async () => {
    const big = JSON.stringify({ model: MODEL, prompt: "x".repeat(10 * 2 ** 20) })
    const response = await post("/v1/completions", big).catch((e: unknown) => e)
    // The server answers before reading the body and closes the connection; a client still sending may see the close instead.
    if (response instanceof Response) expect(await errorOf(response)).toMatchObject({ status: 413, code: "request_too_large" })
    else expect(String((response as Error).cause ?? response)).toMatch(/other side closed|ECONNRESET|EPIPE|socket/i)
    // Without a Content-Length the limit holds while reading.
    const chunked = await fetch(`${server.url}/v1/completions`, {
      method: "POST", body: new Blob([big]).stream(), duplex: "half"
    } as RequestInit).catch((e: unknown) => e)
    if (chunked instanceof Response) expect(await errorOf(chunked)).toMatchObject({ status: 413 })
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
  })
})

describe("the rest of the API", () => {
  it("lists the model, reports health and Prometheus metrics", async () => {
    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toEqual([MODEL])
    const health = await (await fetch(`${server.url}/health`)).json()
    expect(health).toMatchObject({ status: "ok", model: MODEL })
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    for (const name of [
      "canopy_requests_running", "canopy_requests_waiting", "canopy_sequences_running", "canopy_sequences_waiting", "canopy_kv_blocks_used",
      "canopy_prefix_cache_hit_tokens_total", "canopy_prefill_tokens_total", "canopy_generation_tokens_per_second"
    ]) {
      expect(metrics).toMatch(new RegExp(`^# TYPE ${name} (gauge|counter)$`, "m"))
      expect(metrics).toMatch(new RegExp(`^${name}\\{model="${MODEL}"\\} [0-9.e+-]+$`, "m"))
    }
    expect(metrics).toMatch(/^canopy_prefix_cache_hit_tokens_total\{model="test-model"\} [1-9]\d*$/m)
  })

  it("runs a whole prompt tree in one request, paths as the client gave them", async () => {
    const tree = { text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }
    engine.clearCache()
    const response = await post("/v1/canopy/tree", { model: MODEL, tree, max_tokens: 5, temperature: 0 })
    expect(response.status).toBe(200)
    const got = (await response.json()) as { completions: Array<{ path: Array<number>; sample: number; text: string }>; stats: { prefillTokens: number } }
    const want = await engineGreedy({
      tokens: [256, ...bytes("Once, a ")],
      children: [{ tokens: bytes("fox"), samples: 2 }, { tokens: bytes("crow"), samples: 1 }]
    }, 5)
    expect(got.completions.map((c) => [c.path, c.sample, c.text])).toEqual(want.completions.map((c) => [c.path, c.sample, c.text]))
    expect(got.stats.prefillTokens).toBe(want.stats.prefillTokens)
    const bad = await errorOf(await post("/v1/canopy/tree", { tree: { text: "x", samples: -1 } }))
    expect(bad).toMatchObject({ status: 400, param: "tree.samples", code: "invalid_prompt_tree" })
  })
})

describe("a server with tight limits", () => {
  it("refuses past its waiting queue with 429 and Retry-After, and has no chat template without one", async () => {
    // one request at a time, none waiting: the second is refused while the first runs
    const strict = await startServer({ maxWaiting: 0, concurrency: 1, chatTemplate: null })
    try {
      const strictClient = new OpenAI({ baseURL: `${strict.server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: scaled(60_000) })
      const chat = await fetch(`${strict.server.url}/v1/chat/completions`, {
        method: "POST", body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 2 })
      })
      expect(await errorOf(chat)).toMatchObject({ status: 400, code: "chat_template_missing", param: "messages" })
      const controller = new AbortController()
      const first = strictClient.completions.create(
        { model: MODEL, prompt: "Busy", max_tokens: 900, ignore_eos: true } as never,
        { signal: controller.signal }
      ).catch(() => undefined)
      await until("the first request runs", () => strict.server.scheduler.stats().runningRequests === 1)
      const refused = await fetch(`${strict.server.url}/v1/completions`, {
        method: "POST", body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 2 })
      })
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect(await errorOf(refused)).toMatchObject({ status: 429, code: "queue_full", type: "rate_limit_error" })
      await expect(strictClient.completions.create({ model: MODEL, prompt: "x", max_tokens: 2 })).rejects.toBeInstanceOf(OpenAI.RateLimitError)
      controller.abort()
      await first
      await until("it has stopped", () => strict.server.scheduler.stats().runningRequests === 0 && live() === 0)
    } finally {
      await strict.close()
    }
  })

  it("times out a client that never finishes its body, and stays responsive meanwhile", async () => {
    const slow = await startServer({ bodyTimeoutMs: 1000 })
    try {
      const socket = connect(slow.server.port, "127.0.0.1")
      let received = ""
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
      socket.on("data", (d) => (received += d.toString()))
      socket.on("error", () => {})
      socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": `)
      // The server answers others while this one hangs.
      expect((await fetch(`${slow.server.url}/health`)).status).toBe(200)
      const ok = await fetch(`${slow.server.url}/v1/completions`, {
        method: "POST", body: JSON.stringify({ model: MODEL, prompt: "Meanwhile", max_tokens: 2 })
      })
      expect(ok.status).toBe(200)
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error("the slow client was never cut off")), scaled(30_000)))])
      expect(received).toMatch(/^HTTP\/1\.1 408/)
      expect(received).toContain("request_timeout")
      socket.destroy()
    } finally {
      await slow.close()
    }
  })

  it("shuts down gracefully: a running request finishes within the grace time", async () => {
    const closing = await startServer({ shutdownTimeoutMs: scaled(30_000) })
    const closingClient = new OpenAI({ baseURL: `${closing.server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: scaled(60_000) })
    const short = closingClient.completions.create({ model: MODEL, prompt: "Quick", max_tokens: 24, ignore_eos: true } as never) as unknown as Promise<OpenAI.Completion>
    await until("it runs", () => closing.server.scheduler.stats().runningRequests === 1)
    await closing.close()
    const done = await short
    expect(done.choices[0]!.finish_reason).toBe("length")
    expect(done.usage!.completion_tokens).toBe(24)
    expect(live()).toBe(0)
    await expect(fetch(`${closing.server.url}/health`)).rejects.toThrow()
  })

  it("shuts down gracefully: a request past the grace time is cancelled, and nothing stays live", async () => {
    const closing = await startServer({ shutdownTimeoutMs: 300 })
    const closingClient = new OpenAI({ baseURL: `${closing.server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: scaled(60_000) })
    const before = closing.server.metrics.generatedTokens
    const long = closingClient.completions.create({ model: MODEL, prompt: "Forever", max_tokens: 900, stream: true, ignore_eos: true } as never)
      .then(async (s) => {
        for await (const _ of s as unknown as AsyncIterable<OpenAI.Completion>) { /* read to the end */ }
      })
      .then(() => "ended", () => "broke")
    await until("the long request runs", () => closing.server.metrics.generatedTokens > before)
    await closing.close()
    expect(["ended", "broke"]).toContain(await long)
    await until("nothing is live", () => live() === 0)
    expect(closing.server.metrics.generatedTokens - before).toBeLessThan(900)
  })
})

describe("prompt pieces", () => {
  /** A tokenizer that merges "ab" into one token, as BPE merges across a seam. */
  const merging = {
    vocabSize: 300, bosId: 256, eosIds: [257],
    encode: (text: string, options?: { readonly addBos?: boolean }) => {
      const out: Array<number> = options?.addBos === false ? [] : [256]
      for (let i = 0; i < text.length; i++) {
        if (text.startsWith("ab", i)) {
          out.push(299)
          i++
        } else out.push(text.charCodeAt(i))
      }
      return out
    },
    decode: (ids: ReadonlyArray<number>) => ids.map((t) => (t === 299 ? "ab" : t < 256 ? String.fromCharCode(t) : "")).join("")
  }

  it("a tree's prompts are tokenized whole; samples whose prompt ends inside a merge move to an extra child", () => {
    const tree = { text: "xa", samples: 1, children: [{ text: "b", samples: 2 }, { text: "c", samples: 1 }] }
    const { tree: engineTree, clientPath, prompts } = retokenizeTree(tree, merging)
    expect(prompts).toEqual([
      { path: [], tokens: [256, 120, 97] },
      { path: [0], tokens: [256, 120, 299] },
      { path: [1], tokens: [256, 120, 97, 99] }
    ])
    expect(engineTree).toEqual({
      tokens: [256, 120],
      children: [
        { tokens: [299], samples: 2, children: [] },
        { tokens: [97, 99], samples: 1, children: [] },
        { tokens: [97], samples: 1 }
      ]
    })
    expect([...clientPath]).toEqual([["2", []], ["0", [0]], ["1", [1]]])
  })

  it("a tree's per-node settings and sample numbers go with its samples", () => {
    const tree = {
      text: "x", sampling: { temperature: 0 },
      children: [{ text: "ab", samples: 2, firstSample: 5, sampling: { seed: 3 } }, { text: "c", samples: 1 }]
    }
    const { tree: engineTree } = retokenizeTree(tree, merging)
    expect(engineTree).toEqual({
      tokens: [256, 120],
      sampling: { temperature: 0 },
      children: [
        { tokens: [299], samples: 2, firstSample: 5, sampling: { seed: 3 }, children: [] },
        { tokens: [99], samples: 1, children: [] }
      ]
    })
  })

  it("streamed text holds back what could become a stop string and never sends past it", () => {
    const t = new StreamText(["END"])
    expect([t.push("abc"), t.push("E"), t.push("N"), t.push("x"), t.push("EN"), t.push("D more")]).toEqual(["abc", "", "", "ENx", "", ""])
    expect(t.finish("abcENx")).toBe("")
    const u = new StreamText(["\n\n"])
    expect([u.push("a\n"), u.push("b\n"), u.push("\nc")]).toEqual(["a", "\nb", ""])
    expect(u.finish("a\nb")).toBe("")
  })

  it("chat templates come from --chat-template, tokenizer_config.json or chat_template.jinja, else there is none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-template-"))
    try {
      const messages = [{ role: "user", content: "Hi" }]
      // No tokenizer_config.json and no chat_template.jinja: no template.
      expect(await loadChatTemplate({ folder: dir })).toBeUndefined()
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: { content: "</s>" } }))
      expect(await loadChatTemplate({ folder: dir })).toBeUndefined()
      writeFileSync(join(dir, "chat_template.jinja"), "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}")
      const jinja = await loadChatTemplate({ folder: dir })
      expect(jinja?.render(messages)).toBe("<s>[user] Hi</s>")
      expect(jinja?.bosToken).toBe("<s>")
      // tokenizer_config.json's own template wins over the .jinja file; of a list, the one named "default".
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({
        bos_token: "<s>",
        chat_template: [{ name: "tool_use", template: "tools" }, { name: "default", template: "{% for m in messages %}{{ m.content }}{% endfor %}!" }]
      }))
      expect((await loadChatTemplate({ folder: dir }))?.render(messages)).toBe("Hi!")
      // A file given on the command line wins over both.
      const file = join(dir, "mine.jinja")
      writeFileSync(file, "{% if messages[0].role != 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}")
      const mine = await loadChatTemplate({ folder: dir, file })
      expect(mine?.source).toBe(file)
      expect(() => mine!.render(messages)).toThrow(ChatTemplateError)
      // The synthetic models' built-in one.
      expect((await loadChatTemplate({}))?.render(messages)).toBe("<|user|>\nHi\n<|assistant|>\n")
      await expect(loadChatTemplate({ file: join(dir, "missing.jinja") })).rejects.toBeInstanceOf(ChatTemplateLoadError)
      writeFileSync(file, "{% for %}")
      await expect(loadChatTemplate({ file })).rejects.toBeInstanceOf(ChatTemplateLoadError)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
