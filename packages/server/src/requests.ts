/**
 * Request bodies, checked field by field: every field the endpoint knows is
 * read with its type and range, a field it does not know is refused by name
 * (a typo such as `max_token` would otherwise silently fall back to a
 * default), and fields OpenAI has but this engine does not implement are
 * taken only at their neutral value. Each failure is an InvalidRequest naming
 * the field as the client spelled it.
 */
import { parsePromptTree, type PromptTree } from "@canopy/runtime"
import { InvalidJson, InvalidRequest } from "./errors.ts"

/** A prompt as the client gave it: a string, or token ids. */
export type PromptInput = { readonly text: string } | { readonly tokens: ReadonlyArray<number> }

/** What completions, chat and the tree endpoint share. */
export interface SamplingRequest {
  readonly model: string | undefined
  readonly n: number
  /** undefined: the endpoint's default (chat: what is left of the context) */
  readonly maxTokens: number | undefined
  readonly temperature: number
  readonly topP: number
  readonly topK: number
  /** undefined: a fresh random seed for this request */
  readonly seed: number | undefined
  readonly stop: ReadonlyArray<string>
  readonly ignoreEos: boolean
  readonly stream: boolean
  readonly includeUsage: boolean
}

export interface CompletionRequest extends SamplingRequest {
  readonly prompts: ReadonlyArray<PromptInput>
  /** top alternatives per token (0 to 5), or undefined for no logprobs */
  readonly logprobs: number | undefined
  readonly echo: boolean
}

export interface ChatMessage {
  readonly role: string
  readonly content: string
  readonly name?: string
  readonly tool_call_id?: string
}

export interface ChatRequest extends SamplingRequest {
  readonly messages: ReadonlyArray<ChatMessage>
  readonly logprobs: boolean
  /** top alternatives per token (0 to 20) when logprobs is on */
  readonly topLogprobs: number
}

export interface TreeRequest extends SamplingRequest {
  readonly tree: PromptTree
}

/** The most choices one request may ask for (OpenAI's own bound on `n`). */
export const MAX_N = 128
/** The most prompts in one completions request. */
export const MAX_PROMPTS = 1024
/** The most stop strings (OpenAI's bound), and the longest one. */
export const MAX_STOPS = 4
export const MAX_STOP_CHARS = 512
/** Completions' `logprobs` and chat's `top_logprobs` bounds (OpenAI's). */
export const MAX_COMPLETION_LOGPROBS = 5
export const MAX_TOP_LOGPROBS = 20
/** OpenAI's temperature range. */
export const MAX_TEMPERATURE = 2

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

const typeName = (x: unknown): string => (x === null ? "null" : Array.isArray(x) ? "an array" : typeof x === "object" ? "an object" : typeof x)

/** How a value looks in a message: short, and never the whole of a large array. */
const shown = (x: unknown): string => {
  if (typeof x === "number" && !Number.isFinite(x)) return String(x)
  const text = JSON.stringify(x) ?? String(x)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

const bad = (param: string | null, problem: string, code?: string): never => {
  throw new InvalidRequest({ param, problem, ...(code !== undefined ? { code } : {}) })
}

/** Parses the body text as a JSON object. */
export const parseJsonObject = (text: string): Record<string, unknown> => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw new InvalidJson({ problem: e instanceof Error ? e.message : String(e) })
  }
  if (!isRecord(value)) throw new InvalidJson({ problem: `the body is ${typeName(value)}, not an object` })
  return value
}

/** Reads fields of one object; `done` refuses every field no reader asked for. */
class Fields {
  private readonly known = new Set<string>()
  constructor(private readonly body: Record<string, unknown>, private readonly where: string) {}

  /** The field's value; null counts as absent, as OpenAI's API takes it. */
  get(name: string): unknown {
    this.known.add(name)
    const v = this.body[name]
    return v === null ? undefined : v
  }

  name(field: string): string {
    return this.where === "" ? field : `${this.where}.${field}`
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.get(name)
    if (v === undefined) return fallback
    if (typeof v !== "number" || !Number.isInteger(v)) bad(this.name(name), `must be an integer, got ${shown(v)}`)
    const n = v as number
    if (n < min || n > max) bad(this.name(name), `must be from ${min} to ${max}, got ${n}`)
    return n
  }

  optionalInt(name: string, min: number, max: number): number | undefined {
    return this.get(name) === undefined ? undefined : this.int(name, 0, min, max)
  }

  number(name: string, fallback: number, check: (n: number) => boolean, range: string): number {
    const v = this.get(name)
    if (v === undefined) return fallback
    if (typeof v !== "number" || !Number.isFinite(v)) bad(this.name(name), `must be a number, got ${shown(v)}`)
    if (!check(v as number)) bad(this.name(name), `must be ${range}, got ${v as number}`)
    return v as number
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.get(name)
    if (v === undefined) return fallback
    if (typeof v !== "boolean") bad(this.name(name), `must be true or false, got ${shown(v)}`)
    return v as boolean
  }

  string(name: string): string | undefined {
    const v = this.get(name)
    if (v !== undefined && typeof v !== "string") bad(this.name(name), `must be a string, got ${shown(v)}`)
    return v as string | undefined
  }

  /** A field OpenAI has that this server takes only at its neutral value (`neutral` says whether a value is). */
  neutral(name: string, neutral: (v: unknown) => boolean, why: string): void {
    const v = this.get(name)
    if (v !== undefined && !neutral(v)) bad(this.name(name), `${shown(v)} is not supported: ${why}`, "unsupported_parameter")
  }

  done(): void {
    const unknown = Object.keys(this.body).filter((k) => !this.known.has(k))
    if (unknown.length > 0) {
      const names = unknown.map((k) => this.name(k))
      bad(names[0]!, `unknown field${names.length > 1 ? "s" : ""} ${names.map((k) => JSON.stringify(k)).join(", ")}`, "unknown_parameter")
    }
  }
}

const parseStop = (f: Fields): ReadonlyArray<string> => {
  const v = f.get("stop")
  if (v === undefined) return []
  const list = typeof v === "string" ? [v] : Array.isArray(v) ? (v as Array<unknown>) : bad("stop", `must be a string or an array of strings, got ${shown(v)}`)
  if (list.length > MAX_STOPS) bad("stop", `takes at most ${MAX_STOPS} stop strings, got ${list.length}`)
  return list.map((s, i) => {
    const param = typeof v === "string" ? "stop" : `stop[${i}]`
    if (typeof s !== "string") return bad(param, `must be a string, got ${shown(s)}`)
    if (s.length === 0) return bad(param, "must not be empty: an empty stop string would match before the first token")
    if (s.length > MAX_STOP_CHARS) return bad(param, `is ${s.length} characters long; a stop string may have at most ${MAX_STOP_CHARS}`)
    return s
  })
}

const parseStreamOptions = (f: Fields, stream: boolean): boolean => {
  const v = f.get("stream_options")
  if (v === undefined) return false
  if (!stream) bad("stream_options", `is only allowed with "stream": true`)
  if (!isRecord(v)) return bad("stream_options", `must be an object, got ${shown(v)}`)
  const o = new Fields(v, "stream_options")
  const includeUsage = o.bool("include_usage", false)
  o.done()
  return includeUsage
}

/** The fields every sampling endpoint shares; `maxTokens` is read by each endpoint. */
const parseSampling = (f: Fields, maxTokens: number | undefined): SamplingRequest => {
  const model = f.string("model")
  const n = f.int("n", 1, 1, MAX_N)
  const temperature = f.number("temperature", 1, (t) => t >= 0 && t <= MAX_TEMPERATURE, `from 0 to ${MAX_TEMPERATURE}`)
  const topP = f.number("top_p", 1, (p) => p > 0 && p <= 1, "more than 0 and at most 1")
  // -1 is how vLLM spells "off"; 0 is the engine's spelling.
  const topK = Math.max(0, f.int("top_k", 0, -1, 1 << 30))
  const seed = f.optionalInt("seed", 0, 0xffffffff)
  const stop = parseStop(f)
  const ignoreEos = f.bool("ignore_eos", false)
  const stream = f.bool("stream", false)
  const includeUsage = parseStreamOptions(f, stream)
  f.neutral("frequency_penalty", (v) => v === 0, "repetition penalties are not implemented; send 0 or leave it out")
  f.neutral("presence_penalty", (v) => v === 0, "repetition penalties are not implemented; send 0 or leave it out")
  f.neutral("logit_bias", (v) => isRecord(v) && Object.keys(v).length === 0, "logit bias is not implemented; leave it out")
  f.string("user")
  return { model, n, maxTokens, temperature, topP, topK, seed, stop, ignoreEos, stream, includeUsage }
}

const parsePrompt = (f: Fields): ReadonlyArray<PromptInput> => {
  const v = f.get("prompt")
  if (v === undefined) return bad("prompt", "is required: a string, an array of strings, an array of token ids, or an array of token-id arrays", "missing_required_parameter")
  if (typeof v === "string") return [{ text: v }]
  if (!Array.isArray(v)) return bad("prompt", `must be a string, an array of strings, an array of token ids, or an array of token-id arrays, got ${shown(v)}`)
  const list = v as Array<unknown>
  if (list.length === 0) return bad("prompt", "must not be an empty array")
  const ids = (xs: Array<unknown>, param: string): ReadonlyArray<number> => {
    if (xs.length === 0) bad(param, "must not be an empty array of token ids")
    for (let i = 0; i < xs.length; i++) {
      const t = xs[i]
      if (typeof t !== "number" || !Number.isInteger(t) || t < 0) bad(`${param}[${i}]`, `must be a token id (an integer ≥ 0), got ${shown(t)}`)
    }
    return xs as Array<number>
  }
  // One token-id array: a single prompt.
  if (typeof list[0] === "number") return [{ tokens: ids(list, "prompt") }]
  if (list.length > MAX_PROMPTS) bad("prompt", `holds ${list.length} prompts; one request may hold at most ${MAX_PROMPTS}`)
  return list.map((p, i): PromptInput => {
    if (typeof p === "string") return { text: p }
    if (Array.isArray(p)) return { tokens: ids(p as Array<unknown>, `prompt[${i}]`) }
    return bad(`prompt[${i}]`, `must be a string or an array of token ids, got ${shown(p)}`)
  })
}

/** `POST /v1/completions`. */
export const parseCompletionRequest = (body: Record<string, unknown>): CompletionRequest => {
  const f = new Fields(body, "")
  const prompts = parsePrompt(f)
  const maxTokens = f.int("max_tokens", 16, 1, Number.MAX_SAFE_INTEGER)
  const sampling = parseSampling(f, maxTokens)
  const logprobs = f.optionalInt("logprobs", 0, MAX_COMPLETION_LOGPROBS)
  const echo = f.bool("echo", false)
  if (echo && logprobs !== undefined) {
    bad("echo", "cannot be combined with logprobs: the engine returns logits for generated tokens only, not for the prompt's", "unsupported_parameter")
  }
  f.neutral("best_of", (v) => v === 1 || v === sampling.n, "completions are not ranked; leave it out or make it equal to n")
  f.neutral("suffix", (v) => v === "", "insertion (a suffix after the completion) is not supported")
  f.done()
  if (prompts.length * sampling.n > MAX_PROMPTS) {
    bad("n", `${prompts.length} prompts × n = ${sampling.n} asks for ${prompts.length * sampling.n} choices; one request may ask for at most ${MAX_PROMPTS}`)
  }
  return { ...sampling, prompts, logprobs, echo }
}

const ROLES = ["system", "developer", "user", "assistant", "tool"]

const parseMessage = (raw: unknown, i: number): ChatMessage => {
  const where = `messages[${i}]`
  if (!isRecord(raw)) return bad(where, `must be an object with "role" and "content", got ${shown(raw)}`)
  const f = new Fields(raw, where)
  const role = f.string("role")
  if (role === undefined) bad(`${where}.role`, "is required")
  if (!ROLES.includes(role!)) bad(`${where}.role`, `must be one of ${ROLES.map((r) => JSON.stringify(r)).join(", ")}, got ${shown(role)}`)
  const content = f.get("content")
  let text: string
  if (content === undefined) text = ""
  else if (typeof content === "string") text = content
  else if (Array.isArray(content)) {
    // Content parts: only text ones, joined as OpenAI's own models read them.
    text = (content as Array<unknown>).map((part, j) => {
      const at = `${where}.content[${j}]`
      if (!isRecord(part)) return bad(at, `must be an object, got ${shown(part)}`)
      const p = new Fields(part, at)
      const type = p.string("type")
      if (type !== "text") return bad(`${at}.type`, `only "text" parts are supported, got ${shown(type)}`, "unsupported_parameter")
      const t = p.string("text")
      if (t === undefined) bad(`${at}.text`, "is required")
      p.done()
      return t!
    }).join("")
  } else return bad(`${where}.content`, `must be a string or an array of text parts, got ${shown(content)}`)
  const name = f.string("name")
  const toolCallId = f.string("tool_call_id")
  f.neutral("tool_calls", (v) => Array.isArray(v) && v.length === 0, "tool calls are not supported")
  f.neutral("refusal", () => true, "")
  f.done()
  return { role: role!, content: text, ...(name !== undefined ? { name } : {}), ...(toolCallId !== undefined ? { tool_call_id: toolCallId } : {}) }
}

/** `POST /v1/chat/completions`. */
export const parseChatRequest = (body: Record<string, unknown>): ChatRequest => {
  const f = new Fields(body, "")
  const raw = f.get("messages")
  if (raw === undefined) bad("messages", "is required: an array of {role, content}", "missing_required_parameter")
  if (!Array.isArray(raw)) bad("messages", `must be an array of {role, content}, got ${shown(raw)}`)
  const list = raw as Array<unknown>
  if (list.length === 0) bad("messages", "must hold at least one message")
  const messages = list.map(parseMessage)
  const maxTokens = f.optionalInt("max_tokens", 1, Number.MAX_SAFE_INTEGER)
  const maxCompletionTokens = f.optionalInt("max_completion_tokens", 1, Number.MAX_SAFE_INTEGER)
  if (maxTokens !== undefined && maxCompletionTokens !== undefined && maxTokens !== maxCompletionTokens) {
    bad("max_completion_tokens", `differs from max_tokens (${maxCompletionTokens} vs ${maxTokens}); give one`)
  }
  const sampling = parseSampling(f, maxCompletionTokens ?? maxTokens)
  const logprobs = f.bool("logprobs", false)
  const topLogprobs = f.int("top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
  if (f.get("top_logprobs") !== undefined && !logprobs) bad("top_logprobs", `needs "logprobs": true`)
  f.neutral("response_format", (v) => isRecord(v) && v["type"] === "text" && Object.keys(v).length === 1, `only {"type": "text"} is supported`)
  f.neutral("tools", (v) => Array.isArray(v) && v.length === 0, "tool calling is not supported")
  f.neutral("tool_choice", (v) => v === "none", "tool calling is not supported")
  f.neutral("parallel_tool_calls", (v) => typeof v === "boolean", "must be a boolean")
  f.done()
  return { ...sampling, messages, logprobs, topLogprobs }
}

/**
 * `POST /v1/canopy/tree`: `{"tree": <prompt tree>, ...sampling}`, the tree in
 * `canopy generate --tree`'s format; `n` is not taken (each node says its `samples`).
 */
export const parseTreeRequest = (body: Record<string, unknown>, vocabSize: number): TreeRequest => {
  const f = new Fields(body, "")
  const raw = f.get("tree")
  if (raw === undefined) bad("tree", `is required: a prompt tree, {"text": "...", "children": [{"text": "...", "samples": 2}]}`, "missing_required_parameter")
  let tree: PromptTree
  try {
    tree = parsePromptTree(raw, vocabSize)
  } catch (e) {
    const problem = e instanceof Error ? e.message : String(e)
    const path = typeof e === "object" && e !== null && "path" in e ? String((e as { path: unknown }).path) : "$"
    return bad(`tree${path.slice(1)}`, problem, "invalid_prompt_tree")
  }
  const maxTokens = f.int("max_tokens", 16, 1, Number.MAX_SAFE_INTEGER)
  if (body["n"] !== undefined && body["n"] !== null) bad("n", `is not taken here: each node of the tree asks for its own "samples"`)
  const sampling = parseSampling(f, maxTokens)
  f.done()
  return { ...sampling, tree }
}
