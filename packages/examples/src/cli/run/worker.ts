/**
 * What `canopy worker` runs (the command and its help are in ../worker.ts).
 */
import { QueueClient, recordStartFailure, serveQueue, type WorkerStatus } from "@canopy/queue"
import { adapterName, describeModelSource, Engine, Gpu, Model } from "@canopy/runtime"
import { Console, Context, Effect, Layer, Option } from "effect"
import { sampleEngine } from "../../distributed/engine.ts"
import { modelKeyOf } from "../../distributed/modelKey.ts"
import { checkModelSpec } from "../../sampling/modelSource.ts"
import { modelStack } from "../../sampling/stack.ts"
import { progressLine } from "../../terminal/progressLine.ts"
import type { WorkerFlags } from "../worker.ts"
import { engineOptionsOf } from "./engineOptions.ts"

/** A terminal's status line is rewritten with each heartbeat; a log gets a line this often. */
const LOG_EVERY_MS = 10_000

const statusLine = () => {
  const line = progressLine()
  let logged = 0
  return (s: WorkerStatus) => {
    if (!process.stderr.isTTY && Date.now() - logged < LOG_EVERY_MS) return
    logged = Date.now()
    line.update(`worker ${s.id}: ${s.inFlight} jobs in flight · ${s.jobs} done · ${s.samples} samples · ${s.tokensPerSecond.toFixed(1)} tok/s`)
  }
}

export const run = (flags: WorkerFlags) =>
  Effect.gen(function*() {
    const dtype = Option.getOrUndefined(flags.dtype)
    yield* checkModelSpec(flags.model, dtype)
    const { address } = yield* QueueClient
    const identity = {
      ...Option.match(flags.id, { onNone: () => ({}), onSome: (id) => ({ id }) }),
      model: modelKeyOf(flags.model, dtype),
      kvDtype: flags.kvDtype,
      ...Option.match(flags.pool, { onNone: () => ({}), onSome: (pool) => ({ pool }) })
    }
    const stack = Engine.layer(engineOptionsOf(flags)).pipe(Layer.provideMerge(modelStack(flags.model, 0, dtype)))
    const services = yield* Layer.build(stack).pipe(
      Effect.tapError((e) => recordStartFailure(identity, e).pipe(Effect.ignore))
    )
    const describe = `${adapterName(Context.get(services, Gpu))}, ${describeModelSource(Context.get(services, Model).source)}`
    yield* Console.error(
      `canopy worker: serving ${identity.model} (KV ${flags.kvDtype}, pool ${Option.getOrElse(flags.pool, () => "default")}) from ${address.shown} ` +
        `on ${describe}, ${flags.concurrency} jobs in flight; Ctrl-C stops it (jobs in flight get ${flags.grace} s to finish)`
    )
    const summary = yield* serveQueue({
      ...identity,
      concurrency: flags.concurrency,
      engine: sampleEngine(Context.get(services, Engine)),
      describe,
      graceMs: flags.grace * 1000,
      ...(flags.quiet ? {} : { onStatus: statusLine() })
    }).pipe(
      Effect.onInterrupt(() => Console.error(`canopy worker: stopping; jobs in flight get ${flags.grace} s to finish, the rest return to waiting`))
    )
    yield* Console.error(`canopy worker: stopped after ${summary.jobs} jobs, ${summary.samples} samples, ${summary.tokens} tokens`)
  }).pipe(Effect.scoped, Effect.provide(QueueClient.layer(flags.queue)))
