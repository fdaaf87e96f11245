/**
 * Chat templates: the Jinja template a model was trained with, which turns
 * messages into one prompt string, rendered with @huggingface/jinja as
 * transformers' `apply_chat_template(..., add_generation_prompt=True)` does.
 *
 * Where it comes from, first found wins: `--chat-template FILE`; the model
 * folder's tokenizer_config.json `chat_template` (a string, or a list of named
 * templates, of which "default"); the folder's chat_template.jinja. The
 * synthetic models carry a small built-in one, so the endpoint works on them.
 */
import { Template } from "@huggingface/jinja"
import { Data } from "effect"
import { readFile, stat } from "node:fs/promises"
import { join } from "node:path"
import { ChatTemplateError } from "./errors.ts"
import type { ChatMessage } from "./requests.ts"

export interface ChatTemplate {
  /** where the template came from, for logs */
  readonly source: string
  /** the BOS token's text, when the template's context has one: a prompt that starts with it gets no second BOS */
  readonly bosToken: string | undefined
  /** throws ChatTemplateError when the template refuses the messages or fails */
  readonly render: (messages: ReadonlyArray<ChatMessage>) => string
}

/** The most bytes a template file (or tokenizer_config.json) may have: real templates are a few KiB. */
export const MAX_TEMPLATE_BYTES = 4 * 2 ** 20

/** The synthetic models' template: role tags around each message, then the assistant's tag. */
export const BUILTIN_TEMPLATE =
  "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"

/** A template that does not parse or is not a string is the operator's mistake: said at startup, not per request. */
export class ChatTemplateLoadError extends Data.TaggedError("ChatTemplateLoadError")<{ readonly source: string; readonly problem: string }> {
  override get message(): string {
    return `chat template ${this.source}: ${this.problem}`
  }
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** A special token's text from tokenizer_config.json (a string, or an AddedToken object). */
const tokenText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string"
    ? (v as { content: string }).content
    : undefined

export const compileChatTemplate = (
  text: string, source: string, special: { readonly bosToken?: string | undefined; readonly eosToken?: string | undefined } = {}
): ChatTemplate => {
  let template: Template
  try {
    template = new Template(text)
  } catch (e) {
    throw new ChatTemplateLoadError({ source, problem: `does not parse as Jinja: ${message(e)}` })
  }
  return {
    source,
    bosToken: special.bosToken,
    render: (messages) => {
      try {
        return template.render({
          messages,
          add_generation_prompt: true,
          bos_token: special.bosToken ?? "",
          eos_token: special.eosToken ?? ""
        })
      } catch (e) {
        throw new ChatTemplateError({ problem: message(e) })
      }
    }
  }
}

const readLimited = async (path: string): Promise<string> => {
  const info = await stat(path).catch((e: unknown) => {
    throw new ChatTemplateLoadError({ source: path, problem: `cannot be read: ${message(e)}` })
  })
  if (!info.isFile()) throw new ChatTemplateLoadError({ source: path, problem: "is not a regular file" })
  if (info.size > MAX_TEMPLATE_BYTES) throw new ChatTemplateLoadError({ source: path, problem: `is ${info.size} bytes; at most ${MAX_TEMPLATE_BYTES} are read` })
  return readFile(path, "utf8")
}

const exists = async (path: string): Promise<boolean> => {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}

/** tokenizer_config.json's template: a string, or `[{name, template}]` of which "default" (else the first). */
const configTemplate = (config: Record<string, unknown>, source: string): string | undefined => {
  const t = config["chat_template"]
  if (t === undefined || t === null) return undefined
  if (typeof t === "string") return t
  if (Array.isArray(t)) {
    const named = t.filter((x): x is { name: string; template: string } =>
      typeof x === "object" && x !== null && typeof x.template === "string"
    )
    const chosen = named.find((x) => x.name === "default") ?? named[0]
    if (chosen !== undefined) return chosen.template
  }
  throw new ChatTemplateLoadError({ source, problem: `"chat_template" must be a string or a list of {"name", "template"}` })
}

/**
 * The chat template for a model: `file` when given, else the folder's own
 * (undefined when it has none), or the built-in one for a synthetic model.
 */
export const loadChatTemplate = async (
  options: { readonly file?: string | undefined; readonly folder?: string | undefined }
): Promise<ChatTemplate | undefined> => {
  let config: Record<string, unknown> = {}
  const configPath = options.folder !== undefined ? join(options.folder, "tokenizer_config.json") : undefined
  if (configPath !== undefined && (await exists(configPath))) {
    try {
      const parsed: unknown = JSON.parse(await readLimited(configPath))
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) config = parsed as Record<string, unknown>
    } catch (e) {
      if (e instanceof ChatTemplateLoadError) throw e
      throw new ChatTemplateLoadError({ source: configPath, problem: `is not valid JSON: ${message(e)}` })
    }
  }
  const special = { bosToken: tokenText(config["bos_token"]), eosToken: tokenText(config["eos_token"]) }
  if (options.file !== undefined) return compileChatTemplate(await readLimited(options.file), options.file, special)
  if (options.folder === undefined) return compileChatTemplate(BUILTIN_TEMPLATE, "built-in (synthetic model)")
  const fromConfig = configPath !== undefined ? configTemplate(config, configPath) : undefined
  if (fromConfig !== undefined) return compileChatTemplate(fromConfig, configPath!, special)
  const jinjaFile = join(options.folder, "chat_template.jinja")
  if (await exists(jinjaFile)) return compileChatTemplate(await readLimited(jinjaFile), jinjaFile, special)
  return undefined
}
