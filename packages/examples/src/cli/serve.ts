/**
 * `canopy serve`: the OpenAI-compatible HTTP server (`@canopy/server`) over
 * one model. The GPU, the model, the engine and the server are scoped layers:
 * SIGINT or SIGTERM stops taking requests, lets the running ones finish for a
 * while, cancels the rest, and frees the engine, the weights and the device.
 */
import { Engine } from "@canopy/runtime"
import { CanopyServer, DEFAULTS } from "@canopy/server"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { modelStack } from "../sampling/stack.ts"
import { kvDtypeFlag, kvMemoryFlag, kvOptions, MAX_BATCH, modelFlag, positiveInt } from "./flags.ts"

export const serveCommand = Command.make(
  "serve",
  {
    model: modelFlag,
    host: Flag.String("host").pipe(
      Flag.withDescription(`address to listen on (default ${DEFAULTS.host}: this machine only; 0.0.0.0 for every interface)`),
      Flag.withDefault(DEFAULTS.host)
    ),
    port: Flag.Int("port").pipe(
      Flag.withDescription(`TCP port (default ${DEFAULTS.port}; 0 picks a free one)`),
      Flag.filter((p) => p >= 0 && p <= 65_535, (p) => `--port must be from 0 to 65535, got ${p}`),
      Flag.withDefault(DEFAULTS.port)
    ),
    maxWaiting: Flag.Int("max-waiting").pipe(
      Flag.withDescription(`requests that may wait while one runs; more get 429 with Retry-After (default ${DEFAULTS.maxWaiting})`),
      Flag.filter((n) => n >= 0 && n <= 1_000_000, (n) => `--max-waiting must be from 0 to 1000000, got ${n}`),
      Flag.withDefault(DEFAULTS.maxWaiting)
    ),
    maxBody: positiveInt("max-body", DEFAULTS.maxBodyBytes, "largest request body in bytes; larger ones get 413", 2 ** 30),
    chatTemplate: Flag.String("chat-template").pipe(
      Flag.withDescription("a Jinja chat template file for /v1/chat/completions (default: the model's own, from tokenizer_config.json)"),
      Flag.optional
    ),
    modelName: Flag.String("model-name").pipe(
      Flag.withDescription("the model's name in requests and /v1/models (default: the folder's name, or synthetic:PRESET)"),
      Flag.optional
    ),
    batch: positiveInt("max-batch", 1024, "most samples decoding at once", MAX_BATCH),
    kvMemory: kvMemoryFlag,
    kvDtype: kvDtypeFlag
  },
  (flags) =>
    Effect.gen(function*() {
      const server = yield* CanopyServer
      yield* Console.error(
        `canopy serve: ${server.modelId} on ${server.url}/v1 (chat template: ${server.chatTemplate?.source ?? "none"}); ` +
          "Ctrl-C stops it"
      )
      return yield* Effect.never.pipe(
        Effect.onInterrupt(() => {
          const q = server.scheduler.stats()
          return Console.error(`canopy serve: stopping; ${q.runningRequests} running and ${q.waitingRequests} waiting requests finish or are cancelled`)
        })
      )
    }).pipe(
      Effect.provide(
        CanopyServer.layer({
          host: flags.host,
          port: flags.port,
          maxWaiting: flags.maxWaiting,
          maxBodyBytes: flags.maxBody,
          ...Option.match(flags.chatTemplate, { onNone: () => ({}), onSome: (chatTemplateFile) => ({ chatTemplateFile }) }),
          ...Option.match(flags.modelName, { onNone: () => ({}), onSome: (modelId) => ({ modelId }) })
        }).pipe(
          Layer.provideMerge(Engine.layer({ maxBatch: flags.batch, ...kvOptions(flags.kvMemory, flags.kvDtype) })),
          Layer.provideMerge(modelStack(flags.model))
        )
      )
    )
).pipe(Command.withDescription("Serve the model over HTTP with OpenAI's API (completions, chat, models, health, metrics, and /v1/canopy/tree)"))
