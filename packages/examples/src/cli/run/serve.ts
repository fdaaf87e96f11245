/**
 * What `canopy serve` runs (the command and its help are in ../serve.ts).
 */
import { Engine } from "@canopy/runtime"
import { CanopyServer } from "@canopy/server"
import { Console, Effect, Layer, Option } from "effect"
import { modelStack } from "../../sampling/stack.ts"
import type { ServeFlags } from "../serve.ts"
import { engineOptionsOf } from "./engineOptions.ts"

export const run = (flags: ServeFlags) =>
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
        concurrency: flags.maxRunning,
        maxBodyBytes: flags.maxBody,
        ...Option.match(flags.chatTemplate, { onNone: () => ({}), onSome: (chatTemplateFile) => ({ chatTemplateFile }) }),
        ...Option.match(flags.modelName, { onNone: () => ({}), onSome: (modelId) => ({ modelId }) })
      }).pipe(
        Layer.provideMerge(Engine.layer(engineOptionsOf(flags))),
        Layer.provideMerge(modelStack(flags.model, 0, Option.getOrUndefined(flags.dtype)))
      )
    )
  )
