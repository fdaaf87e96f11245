/**
 * `canopy serve`: the OpenAI-compatible HTTP server (`@canopy/server`) over
 * one model. The GPU, the model, the engine and the server are scoped layers:
 * SIGINT or SIGTERM stops taking requests, lets the running ones finish for a
 * while, cancels the rest, and frees the engine, the weights and the device.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { SERVER_DEFAULTS } from "./bounds.ts"
import { kvDtypeFlag, kvMemoryFlag, MAX_BATCH, modelFlag, noOverlapFlag, noTuneFlag, positiveInt, weightDtypeFlag } from "./flags.ts"

const flags = {
  model: modelFlag,
  host: Flag.String("host").pipe(
    Flag.withDescription(`address to listen on (default ${SERVER_DEFAULTS.host}: this machine only; 0.0.0.0 for every interface)`),
    Flag.withDefault(SERVER_DEFAULTS.host)
  ),
  port: Flag.Int("port").pipe(
    Flag.withDescription(`TCP port (default ${SERVER_DEFAULTS.port}; 0 picks a free one)`),
    Flag.filter((p) => p >= 0 && p <= 65_535, (p) => `--port must be from 0 to 65535, got ${p}`),
    Flag.withDefault(SERVER_DEFAULTS.port)
  ),
  maxRunning: positiveInt(
    "max-running",
    SERVER_DEFAULTS.concurrency,
    "requests handed to the engine at once, their samples decoding in one batch (up to --max-batch); more wait in line",
    1_000_000
  ),
  maxWaiting: Flag.Int("max-waiting").pipe(
    Flag.withDescription(`requests that may wait while --max-running run; more get 429 with Retry-After (default ${SERVER_DEFAULTS.maxWaiting})`),
    Flag.filter((n) => n >= 0 && n <= 1_000_000, (n) => `--max-waiting must be from 0 to 1000000, got ${n}`),
    Flag.withDefault(SERVER_DEFAULTS.maxWaiting)
  ),
  maxBody: positiveInt("max-body", SERVER_DEFAULTS.maxBodyBytes, "largest request body in bytes; larger ones get 413", 2 ** 30),
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
  kvDtype: kvDtypeFlag,
  noTune: noTuneFlag,
  noOverlap: noOverlapFlag,
  dtype: weightDtypeFlag
}

export type ServeFlags = Command.Command.Config.Infer<typeof flags>

export const serveCommand = Command.make("serve", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/serve.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Serve the model over HTTP with OpenAI's API (completions, chat, models, health, metrics, and /v1/canopy/tree)"))
