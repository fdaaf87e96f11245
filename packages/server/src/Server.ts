/**
 * The OpenAI-compatible HTTP server over the Engine service, as a scoped
 * layer: it listens when built and, when its scope closes, refuses new
 * requests (503), lets the running ones finish for `shutdownTimeoutMs`,
 * interrupts what is left (the engine stops at its next step and releases
 * every sequence), and closes the socket. The Engine and Model layers below
 * it are released after it.
 *
 * Each request is one prompt tree given to the engine — all its prompts and
 * all `n` samples of each — so the tree's sharing applies within a request;
 * the prefix cache carries it across requests.
 */
import { countSamples, Engine, type GenerateRequest, type GenerateResult, Model, type TreeEngine } from "@canopy/runtime"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { ByteSize, Context, Duration, Effect, Fiber, Layer, Queue, type Scope, Stream } from "effect"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer } from "node:http"
import { basename } from "node:path"
import { type ChatTemplate, type ChatTemplateLoadError, loadChatTemplate } from "./chatTemplate.ts"
import {
  type ApiError, BodyTimeout, BodyTooLarge, defectReply, EngineRequestFailed, type ErrorReply, errorReply, InvalidJson, InvalidRequest,
  ListenError, ModelNotFound, NoChatTemplate, RouteNotFound
} from "./errors.ts"
import { chatLogprobs, completionLogprobs, LogprobCollector, type TokenLogprob } from "./logprobs.ts"
import { Metrics } from "./metrics.ts"
import { checkContext, pathKey, promptsTree, retokenizeTree, tokenizePrompts } from "./prompts.ts"
import {
  type ChatRequest, type CompletionRequest, parseChatRequest, parseCompletionRequest, parseJsonObject, parseTreeRequest, type SamplingRequest,
  type TreeRequest
} from "./requests.ts"
import { DEFAULT_CONCURRENCY, type QueueStats, Scheduler, type Ticket } from "./scheduler.ts"
import { StreamText } from "./streamText.ts"

export interface ServerOptions {
  /** default 127.0.0.1: loopback only */
  readonly host?: string
  /** default 8000; 0 picks a free port (see CanopyServer's `port`) */
  readonly port?: number
  /** requests that may wait while `concurrency` run (default 64); past it, 429 with Retry-After */
  readonly maxWaiting?: number
  /** the largest request body in bytes (default 1 MiB); past it, 413 */
  readonly maxBodyBytes?: number
  /** how long a client may take to send its body (default 30 s); past it, 408 and the connection is closed */
  readonly bodyTimeoutMs?: number
  /** how long running requests may take to finish at shutdown before they are interrupted (default 10 s) */
  readonly shutdownTimeoutMs?: number
  /** the model's name in requests and /v1/models (default: the folder's name, or `synthetic:PRESET`) */
  readonly modelId?: string
  /** a Jinja chat template file, over the model's own */
  readonly chatTemplateFile?: string
  /** the chat template itself (null: none), over the file and the model's own */
  readonly chatTemplate?: ChatTemplate | null
  /** requests handed to the engine at once, their samples batched together in every decode step (default 64; see Scheduler) */
  readonly concurrency?: number
}

export const DEFAULTS = {
  host: "127.0.0.1",
  port: 8000,
  maxWaiting: 64,
  concurrency: DEFAULT_CONCURRENCY,
  maxBodyBytes: 2 ** 20,
  bodyTimeoutMs: 30_000,
  shutdownTimeoutMs: 10_000
} as const

export interface CanopyServerService {
  readonly host: string
  readonly port: number
  /** `http://host:port` */
  readonly url: string
  readonly modelId: string
  readonly scheduler: Scheduler
  readonly metrics: Metrics
  readonly chatTemplate: ChatTemplate | undefined
}

/** The name a model goes by when none is given. */
export const defaultModelId = (source: Model["Service"]["source"]): string =>
  source.kind === "folder" ? basename(source.dir.replace(/\/+$/, "")) || source.dir : `synthetic:${typeof source.model === "string" ? source.model : "custom"}`

const ENDPOINTS = {
  completions: "/v1/completions",
  chat: "/v1/chat/completions",
  tree: "/v1/canopy/tree",
  models: "/v1/models",
  health: "/health",
  metrics: "/metrics"
} as const

/** What the engine's run reports, with each token's logprob when asked for. */
type RunEvent =
  | { readonly _tag: "Token"; readonly path: ReadonlyArray<number>; readonly sample: number; readonly token: number; readonly text: string; readonly logprob: TokenLogprob | undefined }
  | { readonly _tag: "Completion"; readonly completion: GenerateResult["completions"][number] }
  | { readonly _tag: "Done"; readonly result: GenerateResult }

const randomSeed = (): number => crypto.getRandomValues(new Uint32Array(1))[0]!

const requestId = (prefix: string): string => `${prefix}-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`

const finishReason = (r: "stop" | "eos" | "length"): "stop" | "length" => (r === "length" ? "length" : "stop")

const sse = (data: unknown): Uint8Array => new TextEncoder().encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`)

const jsonResponse = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers })

const errorResponse = (reply: ErrorReply) => jsonResponse(reply.body, reply.status, reply.headers)

const usage = (promptTokens: number, completionTokens: number, cachedTokens: number) => ({
  prompt_tokens: promptTokens,
  completion_tokens: completionTokens,
  total_tokens: promptTokens + completionTokens,
  prompt_tokens_details: { cached_tokens: cachedTokens }
})

export class CanopyServer extends Context.Service<CanopyServer, CanopyServerService>()("@canopy/server/CanopyServer") {
  /** Listens on `host:port` for the layer's lifetime, over the Engine and Model services. */
  static readonly layer = (
    options: ServerOptions = {}
  ): Layer.Layer<CanopyServer, ListenError | ChatTemplateLoadError, Engine | Model> =>
    Layer.effect(
      CanopyServer,
      Effect.gen(function*() {
        const engineService = yield* Engine
        const model = yield* Model
        const engine = engineService.engine
        const modelId = options.modelId ?? defaultModelId(model.source)
        const chatTemplate = options.chatTemplate !== undefined
          ? options.chatTemplate ?? undefined
          : yield* Effect.tryPromise({
            try: () =>
              loadChatTemplate({
                file: options.chatTemplateFile,
                folder: model.source.kind === "folder" ? model.source.dir : undefined
              }),
            catch: (e) => e as ChatTemplateLoadError
          })
        const scheduler = yield* Scheduler.make({
          maxWaiting: options.maxWaiting ?? DEFAULTS.maxWaiting,
          concurrency: options.concurrency ?? DEFAULTS.concurrency
        })
        const metrics = new Metrics()
        const bodyTimeoutMs = options.bodyTimeoutMs ?? DEFAULTS.bodyTimeoutMs
        const app = makeApp({
          engineService, engine, model, modelId, chatTemplate, scheduler, metrics,
          maxBodyBytes: options.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
          bodyTimeoutMs
        })
        const server = yield* NodeHttpServer.make(
          () =>
            createServer({
              // Node's own limits back the handler's body timeout up: headers that never end, a body the handler never reads.
              headersTimeout: bodyTimeoutMs,
              requestTimeout: bodyTimeoutMs + 5_000,
              connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(bodyTimeoutMs / 4)))
            }),
          {
            host: options.host ?? DEFAULTS.host,
            port: options.port ?? DEFAULTS.port,
            gracefulShutdownTimeout: Duration.millis(options.shutdownTimeoutMs ?? DEFAULTS.shutdownTimeoutMs)
          }
        ).pipe(
          Effect.mapError((e) => {
            const cause = (e as { cause?: unknown }).cause
            return new ListenError({
              host: options.host ?? DEFAULTS.host,
              port: options.port ?? DEFAULTS.port,
              problem: cause instanceof Error ? cause.message : String(cause ?? e)
            })
          })
        )
        yield* server.serve(app)
        // Added last, so it runs first when the scope closes: new requests are refused while the running ones finish.
        yield* Effect.addFinalizer(() => Effect.sync(() => scheduler.close()))
        const address = server.address
        const host = options.host ?? DEFAULTS.host
        const port = address._tag === "UnixPathAddress" ? 0 : address.port
        const urlHost = host.includes(":") ? `[${host}]` : host
        return { host, port, url: `http://${urlHost}:${port}`, modelId, scheduler, metrics, chatTemplate }
      })
    )
}

interface AppContext {
  readonly engineService: Engine["Service"]
  readonly engine: TreeEngine
  readonly model: Model["Service"]
  readonly modelId: string
  readonly chatTemplate: ChatTemplate | undefined
  readonly scheduler: Scheduler
  readonly metrics: Metrics
  readonly maxBodyBytes: number
  readonly bodyTimeoutMs: number
}

/** Throws become typed failures: the parsers throw InvalidRequest and friends, anything else is a defect. */
const attempt = <A>(f: () => A): Effect.Effect<A, ApiError> =>
  Effect.try({
    try: f,
    catch: (e) => {
      const tag = typeof e === "object" && e !== null ? (e as { _tag?: unknown })._tag : undefined
      if (typeof tag === "string" && API_TAGS.has(tag)) return e as ApiError
      throw e
    }
  })

const API_TAGS = new Set([
  "InvalidRequest", "InvalidJson", "ModelNotFound", "RouteNotFound", "BodyTooLarge", "BodyTimeout", "QueueFull", "ShuttingDown", "NoChatTemplate",
  "ChatTemplateError", "EngineRequestFailed"
])

const makeApp = (ctx: AppContext) => {
  const { engineService, engine, model, modelId, scheduler, metrics } = ctx
  const tokenizer = model.tokenizer
  const vocabSize = model.config.vocabSize
  const maxPositions = model.config.maxPositionEmbeddings

  const readBody = (request: HttpServerRequest) =>
    Effect.gen(function*() {
      const declared = Number(request.headers["content-length"] ?? NaN)
      if (Number.isFinite(declared) && declared > ctx.maxBodyBytes) {
        return yield* Effect.fail(new BodyTooLarge({ limitBytes: ctx.maxBodyBytes, sentBytes: declared }))
      }
      // Stopping a read destroys the connection at once, before any answer could be sent: the read goes on in
      // the request's scope, and only the wait for it times out; the scope ends it once the 408 is sent.
      const reading = yield* request.text.pipe(
        Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(ctx.maxBodyBytes)),
        Effect.mapError((e): ApiError => {
          const reason = (e as { reason?: { reason?: unknown } }).reason?.reason
          return reason === "BodyTooLarge"
            ? new BodyTooLarge({ limitBytes: ctx.maxBodyBytes })
            : new InvalidJson({ problem: `the body could not be read: ${e.message}` })
        }),
        Effect.forkScoped
      )
      const text = yield* Fiber.join(reading).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(ctx.bodyTimeoutMs),
          orElse: () => Effect.fail(new BodyTimeout({ seconds: ctx.bodyTimeoutMs / 1000 }))
        })
      )
      return yield* attempt(() => parseJsonObject(text))
    })

  const checkModel = (name: string | undefined): Effect.Effect<void, ModelNotFound | InvalidRequest> => {
    if (name === undefined) return Effect.fail(new InvalidRequest({ param: "model", problem: `is required; this server serves ${JSON.stringify(modelId)}`, code: "missing_required_parameter" }))
    return name === modelId ? Effect.void : Effect.fail(new ModelNotFound({ model: name, served: modelId }))
  }

  const sampling = (r: SamplingRequest, maxTokens: number): NonNullable<GenerateRequest["sampling"]> => ({
    temperature: r.temperature,
    topP: r.topP,
    topK: r.topK,
    seed: r.seed ?? randomSeed(),
    maxTokens,
    stop: r.stop,
    ignoreEos: r.ignoreEos
  })

  /** The engine's run of one admitted request, as a stream of its events; interrupting it stops the engine at its next step. */
  const run = (ticket: Ticket, request: GenerateRequest, logprobs: number | undefined): Stream.Stream<RunEvent, EngineRequestFailed> =>
    Stream.callback<RunEvent, EngineRequestFailed>((queue) => {
      const collector = logprobs !== undefined ? new LogprobCollector(vocabSize, logprobs) : undefined
      const admitted = performance.now()
      let first = true
      return ticket.run(
        Effect.suspend(() =>
          engineService.generate(request, {
            onToken: (e) => {
              metrics.token()
              if (first) {
                first = false
                metrics.firstToken((performance.now() - admitted) / 1000)
              }
              Queue.offerUnsafe(queue, { _tag: "Token", ...e, logprob: collector?.take(e.path, e.sample, e.token) })
            },
            onCompletion: (completion) => void Queue.offerUnsafe(queue, { _tag: "Completion", completion }),
            ...(collector !== undefined ? { onLogits: collector.onLogits } : {})
          })
        )
      ).pipe(
        Effect.tap((result) => Effect.sync(() => metrics.finished(result.stats))),
        Effect.flatMap((result) => Queue.offer(queue, { _tag: "Done", result })),
        Effect.andThen(Queue.end(queue)),
        Effect.catch((cause) => Queue.fail(queue, new EngineRequestFailed({ cause })))
      )
    })

  /** The whole run, for a response sent at the end. */
  const collect = (ticket: Ticket, request: GenerateRequest, logprobs: number | undefined) =>
    Effect.gen(function*() {
      const perSample = new Map<string, Array<TokenLogprob>>()
      let result: GenerateResult | undefined
      yield* Stream.runForEach(run(ticket, request, logprobs), (e) =>
        Effect.sync(() => {
          if (e._tag === "Token" && e.logprob !== undefined) {
            const key = `${pathKey(e.path)}#${e.sample}`
            const list = perSample.get(key) ?? []
            list.push(e.logprob)
            perSample.set(key, list)
          } else if (e._tag === "Done") result = e.result
        }))
      return { result: result!, logprobs: (path: ReadonlyArray<number>, sample: number) => perSample.get(`${pathKey(path)}#${sample}`) ?? [] }
    })

  /** A server-sent-events response: the chunks, then `data: [DONE]`; an engine failure mid-stream is sent as an error chunk. */
  const sseResponse = (chunks: Stream.Stream<unknown, EngineRequestFailed>) =>
    HttpServerResponse.stream(
      chunks.pipe(
        Stream.map(sse),
        Stream.catch((error: EngineRequestFailed) => Stream.make(sse(errorReply(error).body))),
        Stream.concat(Stream.make(sse("[DONE]")))
      ),
      { contentType: "text/event-stream", headers: { "cache-control": "no-cache", "x-accel-buffering": "no" } }
    )

  // ---- /v1/completions ------------------------------------------------------

  const completions = (body: Record<string, unknown>) =>
    Effect.gen(function*() {
      const r: CompletionRequest = yield* attempt(() => parseCompletionRequest(body))
      yield* checkModel(r.model)
      const prompts = yield* attempt(() => tokenizePrompts(r.prompts, tokenizer, vocabSize))
      const maxTokens = r.maxTokens!
      yield* attempt(() => checkContext(prompts, maxTokens, maxPositions))
      const { tree, promptOf } = promptsTree(prompts.map((p) => p.tokens), r.n)
      const request: GenerateRequest = { tree, sampling: sampling(r, maxTokens) }
      const ticket = yield* scheduler.admit(prompts.length * r.n)
      const id = requestId("cmpl")
      const created = Math.floor(Date.now() / 1000)
      const promptTokens = prompts.reduce((n, p) => n + p.tokens.length, 0)
      const indexOf = (path: ReadonlyArray<number>, sample: number) => promptOf.get(pathKey(path))! * r.n + sample
      const promptOfIndex = (index: number) => prompts[Math.floor(index / r.n)]!
      if (!r.stream) {
        const { result, logprobs } = yield* collect(ticket, request, r.logprobs)
        const choices = result.completions
          .map((c) => {
            const index = indexOf(c.path, c.sample)
            const prefix = r.echo ? promptOfIndex(index).text : ""
            return {
              text: prefix + c.text,
              index,
              logprobs: r.logprobs !== undefined ? completionLogprobs(tokenizer, logprobs(c.path, c.sample), 0) : null,
              finish_reason: finishReason(c.finishReason)
            }
          })
          .sort((a, b) => a.index - b.index)
        const completionTokens = result.completions.reduce((n, c) => n + c.tokens.length, 0)
        return jsonResponse({
          id, object: "text_completion", created, model: modelId, choices,
          usage: usage(promptTokens, completionTokens, result.stats.reusedTokens)
        })
      }
      const chunk = (choices: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({
        id, object: "text_completion", created, model: modelId, choices, ...(r.includeUsage ? { usage: null } : {}), ...extra
      })
      const texts = new Map<number, StreamText>()
      const textOf = (index: number) => {
        let t = texts.get(index)
        if (t === undefined) texts.set(index, (t = new StreamText(r.stop)))
        return t
      }
      const offsets = new Map<number, number>()
      const echoes = r.echo
        ? Stream.fromIterable(Array.from({ length: prompts.length * r.n }, (_, index) => chunk([{ text: promptOfIndex(index).text, index, logprobs: null, finish_reason: null }])))
        : Stream.empty
      const body$ = run(ticket, request, r.logprobs).pipe(
        Stream.flatMap((e) => {
          if (e._tag === "Token") {
            const index = indexOf(e.path, e.sample)
            const text = textOf(index).push(e.text)
            if (text === "" && e.logprob === undefined) return Stream.empty
            const offset = offsets.get(index) ?? 0
            offsets.set(index, offset + text.length)
            const logprobs = e.logprob !== undefined ? completionLogprobs(tokenizer, [e.logprob], offset) : null
            return Stream.make(chunk([{ text, index, logprobs, finish_reason: null }]))
          }
          if (e._tag === "Completion") {
            const index = indexOf(e.completion.path, e.completion.sample)
            const text = textOf(index).finish(e.completion.text)
            return Stream.make(chunk([{ text, index, logprobs: null, finish_reason: finishReason(e.completion.finishReason) }]))
          }
          if (!r.includeUsage) return Stream.empty
          const completionTokens = e.result.completions.reduce((n, c) => n + c.tokens.length, 0)
          return Stream.make(chunk([], { usage: usage(promptTokens, completionTokens, e.result.stats.reusedTokens) }))
        })
      )
      return sseResponse(Stream.concat(echoes, body$))
    })

  // ---- /v1/chat/completions -------------------------------------------------

  const chat = (body: Record<string, unknown>) =>
    Effect.gen(function*() {
      const r: ChatRequest = yield* attempt(() => parseChatRequest(body))
      yield* checkModel(r.model)
      const template = ctx.chatTemplate
      if (template === undefined) return yield* Effect.fail(new NoChatTemplate({ model: modelId }))
      const rendered = yield* attempt(() => template.render(r.messages))
      // A template that writes the BOS itself must not get a second one from the tokenizer.
      const addBos = template.bosToken === undefined || template.bosToken === "" || !rendered.startsWith(template.bosToken)
      const tokens = tokenizer.encode(rendered, { addBos })
      const maxTokens = r.maxTokens ?? Math.max(1, maxPositions - tokens.length)
      yield* attempt(() => checkContext([{ tokens }], maxTokens, maxPositions, "messages"))
      const request: GenerateRequest = { tree: { tokens, samples: r.n }, sampling: sampling(r, maxTokens) }
      const logprobsK = r.logprobs ? r.topLogprobs : undefined
      const ticket = yield* scheduler.admit(r.n)
      const id = requestId("chatcmpl")
      const created = Math.floor(Date.now() / 1000)
      if (!r.stream) {
        const { result, logprobs } = yield* collect(ticket, request, logprobsK)
        const choices = result.completions.map((c) => ({
          index: c.sample,
          message: { role: "assistant", content: c.text },
          logprobs: logprobsK !== undefined ? { content: chatLogprobs(tokenizer, logprobs(c.path, c.sample), logprobsK) } : null,
          finish_reason: finishReason(c.finishReason)
        })).sort((a, b) => a.index - b.index)
        const completionTokens = result.completions.reduce((n, c) => n + c.tokens.length, 0)
        return jsonResponse({
          id, object: "chat.completion", created, model: modelId, choices,
          usage: usage(tokens.length, completionTokens, result.stats.reusedTokens)
        })
      }
      const chunk = (choices: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({
        id, object: "chat.completion.chunk", created, model: modelId, choices, ...(r.includeUsage ? { usage: null } : {}), ...extra
      })
      const texts = Array.from({ length: r.n }, () => new StreamText(r.stop))
      const roles = Stream.fromIterable(
        Array.from({ length: r.n }, (_, index) => chunk([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]))
      )
      const body$ = run(ticket, request, logprobsK).pipe(
        Stream.flatMap((e) => {
          if (e._tag === "Token") {
            const content = texts[e.sample]!.push(e.text)
            if (content === "" && e.logprob === undefined) return Stream.empty
            const logprobs = e.logprob !== undefined ? { content: chatLogprobs(tokenizer, [e.logprob], logprobsK!) } : null
            return Stream.make(chunk([{ index: e.sample, delta: { content }, logprobs, finish_reason: null }]))
          }
          if (e._tag === "Completion") {
            const c = e.completion
            const content = texts[c.sample]!.finish(c.text)
            return Stream.make(chunk([{
              index: c.sample, delta: content === "" ? {} : { content }, logprobs: null, finish_reason: finishReason(c.finishReason)
            }]))
          }
          if (!r.includeUsage) return Stream.empty
          const completionTokens = e.result.completions.reduce((n, c) => n + c.tokens.length, 0)
          return Stream.make(chunk([], { usage: usage(tokens.length, completionTokens, e.result.stats.reusedTokens) }))
        })
      )
      return sseResponse(Stream.concat(roles, body$))
    })

  // ---- /v1/canopy/tree ------------------------------------------------------

  const treeEndpoint = (body: Record<string, unknown>) =>
    Effect.gen(function*() {
      const r: TreeRequest = yield* attempt(() => parseTreeRequest(body, vocabSize))
      if (r.model !== undefined) yield* checkModel(r.model)
      const retokenized = yield* attempt(() => retokenizeTree(r.tree, tokenizer))
      const maxTokens = r.maxTokens!
      for (const p of retokenized.prompts) {
        yield* attempt(() => checkContext([p], maxTokens, maxPositions, `tree${p.path.map((i) => `.children[${i}]`).join("")}`))
      }
      const samples = countSamples(retokenized.tree)
      if (samples > MAX_TREE_SAMPLES) {
        return yield* Effect.fail(new InvalidRequest({
          param: "tree", problem: `asks for ${samples} samples; one request to this server may ask for at most ${MAX_TREE_SAMPLES}`
        }))
      }
      const request: GenerateRequest = { tree: retokenized.tree, sampling: sampling(r, maxTokens) }
      const ticket = yield* scheduler.admit(samples)
      const id = requestId("tree")
      const created = Math.floor(Date.now() / 1000)
      const clientPath = (path: ReadonlyArray<number>) => retokenized.clientPath.get(pathKey(path)) ?? path
      const completionJson = (c: GenerateResult["completions"][number]) => ({
        path: clientPath(c.path), sample: c.sample, text: c.text, tokens: c.tokens, finish_reason: finishReason(c.finishReason)
      })
      const promptTokens = retokenized.prompts.reduce((n, p) => n + p.tokens.length, 0)
      const done = (result: GenerateResult) => ({
        id, object: "canopy.tree", created, model: modelId,
        completions: result.completions.map(completionJson),
        usage: usage(promptTokens, result.completions.reduce((n, c) => n + c.tokens.length, 0), result.stats.reusedTokens),
        stats: result.stats
      })
      if (!r.stream) {
        const { result } = yield* collect(ticket, request, undefined)
        return jsonResponse(done(result))
      }
      return sseResponse(run(ticket, request, undefined).pipe(
        Stream.map((e) => {
          switch (e._tag) {
            case "Token":
              return { object: "canopy.tree.event", event: "token", path: clientPath(e.path), sample: e.sample, token: e.token, text: e.text }
            case "Completion":
              return { object: "canopy.tree.event", event: "completion", ...completionJson(e.completion) }
            case "Done":
              return { ...done(e.result), object: "canopy.tree.event", event: "done" }
          }
        })
      ))
    })

  // ---- the rest -------------------------------------------------------------

  const models = () =>
    jsonResponse({ object: "list", data: [{ id: modelId, object: "model", created: STARTED, owned_by: "canopy", max_model_len: maxPositions }] })

  const health = () =>
    scheduler.isClosed
      ? jsonResponse({ status: "shutting down" }, 503, { "retry-after": String(scheduler.retryAfterSeconds) })
      : jsonResponse({ status: "ok", model: modelId, ...queueJson(scheduler.stats()) })

  const metricsText = () =>
    HttpServerResponse.text(metrics.render(scheduler.stats(), engine, modelId), { contentType: "text/plain; version=0.0.4; charset=utf-8" })

  // The request's scope (the server's, per request) holds its place in the line until the response, a stream too, is sent.
  const route = (
    request: HttpServerRequest
  ): { readonly endpoint: string; readonly handle: Effect.Effect<HttpServerResponse.HttpServerResponse, ApiError, Scope.Scope> } => {
    const path = new URL(request.url, "http://localhost").pathname.replace(/\/+$/, "") || "/"
    const post = (handler: (body: Record<string, unknown>) => Effect.Effect<HttpServerResponse.HttpServerResponse, ApiError, Scope.Scope>) =>
      Effect.flatMap(readBody(request), handler)
    const methodIs = (m: string) => request.method === m
    switch (path) {
      case ENDPOINTS.completions:
        if (methodIs("POST")) return { endpoint: path, handle: post(completions) }
        break
      case ENDPOINTS.chat:
        if (methodIs("POST")) return { endpoint: path, handle: post(chat) }
        break
      case ENDPOINTS.tree:
        if (methodIs("POST")) return { endpoint: path, handle: post(treeEndpoint) }
        break
      case ENDPOINTS.models:
        if (methodIs("GET")) return { endpoint: path, handle: Effect.sync(models) }
        break
      case ENDPOINTS.health:
        if (methodIs("GET")) return { endpoint: path, handle: Effect.sync(health) }
        break
      case ENDPOINTS.metrics:
        if (methodIs("GET")) return { endpoint: path, handle: Effect.sync(metricsText) }
        break
    }
    return { endpoint: "other", handle: Effect.fail(new RouteNotFound({ method: request.method, path })) }
  }

  return Effect.gen(function*() {
    const request = yield* HttpServerRequest
    const { endpoint, handle } = route(request)
    // The server runs handlers uninterruptibly; a client that goes away must be able to stop its request.
    const response = yield* handle.pipe(
      Effect.catch((error: ApiError) => Effect.succeed(errorResponse(errorReply(error)))),
      Effect.catchDefect((defect) => Effect.succeed(errorResponse(defectReply(defect)))),
      Effect.interruptible
    )
    metrics.request(endpoint, response.status)
    return response
  })
}

/**
 * The most samples one tree request may ask for. The engine takes a million;
 * a server running one request at a time would be held by such a request for
 * hours, so it takes what a few batches decode.
 */
export const MAX_TREE_SAMPLES = 16_384

/** When this process started serving, for /v1/models' `created`. */
const STARTED = Math.floor(Date.now() / 1000)

const queueJson = (q: QueueStats) => ({
  running_requests: q.runningRequests, waiting_requests: q.waitingRequests, running_sequences: q.runningSequences, waiting_sequences: q.waitingSequences
})
