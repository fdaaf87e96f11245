/**
 * The server's typed errors, and how each becomes an OpenAI-shaped error
 * response: `{"error": {"message", "type", "param", "code"}}` with its status
 * (and `Retry-After` where waiting helps). Engine errors map here too, so a
 * client sees 400 for what it asked wrong and 500 only for what went wrong.
 */
import { Data } from "effect"

/** A field of the request body that is missing, of the wrong type, out of range, or not supported. */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  /** the field, as the client spelled it (`messages[2].content`), or null for the body as a whole */
  readonly param: string | null
  readonly problem: string
  readonly code?: string | undefined
}> {
  override get message(): string {
    return this.param === null ? this.problem : `${this.param}: ${this.problem}`
  }
}

/** The body is not JSON, or not a JSON object. */
export class InvalidJson extends Data.TaggedError("InvalidJson")<{ readonly problem: string }> {
  override get message(): string {
    return `the request body is not a JSON object: ${this.problem}`
  }
}

/** The body names a model this server does not serve. */
export class ModelNotFound extends Data.TaggedError("ModelNotFound")<{ readonly model: string; readonly served: string }> {
  override get message(): string {
    return `the model ${JSON.stringify(this.model)} does not exist here; this server serves ${JSON.stringify(this.served)}`
  }
}

/** No endpoint at this path, or not for this method. */
export class RouteNotFound extends Data.TaggedError("RouteNotFound")<{ readonly method: string; readonly path: string }> {
  override get message(): string {
    return `no endpoint ${this.method} ${this.path}; endpoints: POST /v1/completions, POST /v1/chat/completions, POST /v1/canopy/tree, GET /v1/models, GET /health, GET /metrics`
  }
}

/** The body is larger than the server takes (`--max-body`). */
export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limitBytes: number; readonly sentBytes?: number | undefined }> {
  override get message(): string {
    const sent = this.sentBytes !== undefined ? ` (Content-Length ${this.sentBytes})` : ""
    return `the request body is larger than the ${this.limitBytes} bytes this server takes${sent}`
  }
}

/** The client did not finish sending its body in time. */
export class BodyTimeout extends Data.TaggedError("BodyTimeout")<{ readonly seconds: number }> {
  override get message(): string {
    return `the request body did not arrive within ${this.seconds} s`
  }
}

/** The waiting queue is full (`--max-waiting`): come back later. */
export class QueueFull extends Data.TaggedError("QueueFull")<{
  readonly waiting: number
  readonly limit: number
  readonly retryAfterSeconds: number
}> {
  override get message(): string {
    return `the server is busy: ${this.waiting} requests are already waiting (at most ${this.limit}); retry in ${this.retryAfterSeconds} s`
  }
}

/** The server is stopping and takes no new requests. */
export class ShuttingDown extends Data.TaggedError("ShuttingDown")<{ readonly retryAfterSeconds: number }> {
  override get message(): string {
    return "the server is shutting down and takes no new requests"
  }
}

/** A chat request to a model that has no chat template. */
export class NoChatTemplate extends Data.TaggedError("NoChatTemplate")<{ readonly model: string }> {
  override get message(): string {
    return `the model ${JSON.stringify(this.model)} has no chat template (tokenizer_config.json has no "chat_template" and the folder has no chat_template.jinja); ` +
      "start the server with --chat-template FILE, or use /v1/completions"
  }
}

/** The chat template could not render these messages (it may refuse some, e.g. roles that do not alternate). */
export class ChatTemplateError extends Data.TaggedError("ChatTemplateError")<{ readonly problem: string }> {
  override get message(): string {
    return `the chat template could not render the messages: ${this.problem}`
  }
}

/** A request the engine refused or failed: the engine's own typed error, kept as the cause. */
export class EngineRequestFailed extends Data.TaggedError("EngineRequestFailed")<{ readonly cause: unknown }> {
  override get message(): string {
    return this.cause instanceof Error ? this.cause.message : String(this.cause)
  }
}

/** The server could not listen where it was asked to (the port is taken, the address is not this machine's). */
export class ListenError extends Data.TaggedError("ListenError")<{ readonly host: string; readonly port: number; readonly problem: string }> {
  override get message(): string {
    return `cannot listen on ${this.host}:${this.port}: ${this.problem}`
  }
}

export type ApiError =
  | InvalidRequest
  | InvalidJson
  | ModelNotFound
  | RouteNotFound
  | BodyTooLarge
  | BodyTimeout
  | QueueFull
  | ShuttingDown
  | NoChatTemplate
  | ChatTemplateError
  | EngineRequestFailed

/** What the response carries: status, OpenAI's error object, and headers. */
export interface ErrorReply {
  readonly status: number
  readonly body: {
    readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null }
  }
  readonly headers: Readonly<Record<string, string>>
}

const reply = (
  status: number, type: string, message: string, param: string | null, code: string | null, headers: Record<string, string> = {}
): ErrorReply => ({ status, body: { error: { message, type, param, code } }, headers })

const tagOf = (e: unknown): string => (typeof e === "object" && e !== null ? String((e as { _tag?: unknown })._tag ?? "") : "")

/** The engine's field names in the request's spelling. */
const SAMPLING_PARAMS: Readonly<Record<string, string>> = {
  temperature: "temperature", topK: "top_k", topP: "top_p", seed: "seed", maxTokens: "max_tokens", stop: "stop", stopTokenIds: "stop"
}

/** An engine error as a reply: the client's mistakes are 400, the server's 500. */
const engineReply = (cause: unknown): ErrorReply => {
  const message = cause instanceof Error ? cause.message : String(cause)
  switch (tagOf(cause)) {
    case "InvalidPromptTree":
      return reply(400, "invalid_request_error", message, "tree", "invalid_prompt_tree")
    case "InvalidSampling": {
      const field = String((cause as { field?: unknown }).field ?? "")
      return reply(400, "invalid_request_error", message, SAMPLING_PARAMS[field] ?? field, "invalid_value")
    }
    case "ContextTooLong":
      return reply(400, "invalid_request_error", message, "max_tokens", "context_length_exceeded")
    case "EngineCapacityError":
      return reply(400, "invalid_request_error", message, null, "kv_capacity_exceeded")
    case "NonFiniteLogits":
      return reply(500, "server_error", message, null, "non_finite_logits")
    default:
      return reply(500, "server_error", `the engine failed: ${message}`, null, tagOf(cause) || null)
  }
}

export const errorReply = (error: ApiError): ErrorReply => {
  switch (error._tag) {
    case "InvalidRequest":
      return reply(400, "invalid_request_error", error.message, error.param, error.code ?? "invalid_value")
    case "InvalidJson":
      return reply(400, "invalid_request_error", error.message, null, "invalid_json")
    case "ModelNotFound":
      return reply(404, "invalid_request_error", error.message, "model", "model_not_found")
    case "RouteNotFound":
      return reply(404, "invalid_request_error", error.message, null, "not_found")
    case "BodyTooLarge":
      return reply(413, "invalid_request_error", error.message, null, "request_too_large", { connection: "close" })
    case "BodyTimeout":
      return reply(408, "invalid_request_error", error.message, null, "request_timeout", { connection: "close" })
    case "QueueFull":
      return reply(429, "rate_limit_error", error.message, null, "queue_full", { "retry-after": String(error.retryAfterSeconds) })
    case "ShuttingDown":
      return reply(503, "server_error", error.message, null, "shutting_down", { "retry-after": String(error.retryAfterSeconds) })
    case "NoChatTemplate":
      return reply(400, "invalid_request_error", error.message, "messages", "chat_template_missing")
    case "ChatTemplateError":
      return reply(400, "invalid_request_error", error.message, "messages", "chat_template_error")
    case "EngineRequestFailed":
      return engineReply(error.cause)
  }
}

/** A defect (a bug, an unexpected throw) as a reply, without leaking a stack. */
export const defectReply = (defect: unknown): ErrorReply =>
  reply(500, "server_error", `internal error: ${defect instanceof Error ? defect.message : String(defect)}`, null, null)
