/**
 * What `canopy status` runs (the command and its help are in ../status.ts).
 */
import { listRuns, QueueClient, readLiveWorkers, redisCall, runProgress } from "@canopy/queue"
import { Console, Effect, Option } from "effect"
import { statusText } from "../../distributed/progressText.ts"
import type { StatusFlags } from "../status.ts"

const overview = (limit: number, json: boolean) =>
  Effect.gen(function*() {
    const connection = yield* QueueClient
    const runs = yield* Effect.forEach(yield* listRuns(limit), (r) => runProgress(r.id))
    const workers = yield* redisCall(connection, () => readLiveWorkers(connection.redis))
    if (json) return yield* Console.log(JSON.stringify({ runs, workers }, null, 2))
    const lines = runs.map((p) => `${p.run.id}  ${p.state.padEnd(7)}  ${p.samples}/${p.expected} samples  ${new Date(p.run.createdAt).toISOString()}  ${p.run.model}`)
    lines.push(...workers.map((w) => `worker ${w.id}: ${w.state}, ${w.model} (KV ${w.kvDtype}, pool ${w.pool}), ${w.inFlight} in flight, ${w.tokensPerSecond.toFixed(1)} tok/s${w.error !== undefined ? `; ${w.error}` : ""}`))
    yield* Console.log(lines.length > 0 ? lines.join("\n") : `no runs and no workers on ${connection.address.shown}`)
  })

export const run = (flags: StatusFlags) =>
  Option.match(flags.run, {
    onNone: () => overview(flags.limit, flags.json),
    onSome: (id) =>
      Effect.flatMap(runProgress(id), (p) => Console.log(flags.json ? JSON.stringify(p, null, 2) : statusText(p, Date.now()).join("\n")))
  }).pipe(Effect.provide(QueueClient.layer(flags.queue)))
