/**
 * `canopy bench queue`: the distributed pipeline on 1, 2 and 3 local worker
 * processes over a redis-server of its own; the throughput of each, every
 * run checked to lose and repeat no sample.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intListFlag, kvDtypeFlag, modelFlag, positiveInt } from "../flags.ts"

const flags = {
  workers: intListFlag("workers", "1,2,3", 1, "worker counts to compare, each its own pool of local worker processes"),
  model: modelFlag,
  problems: positiveInt("problems", 6, "problems of the built-in set in the run", 10),
  samples: positiveInt("samples", 8, "samples per problem", 10_000),
  block: positiveInt("block", 4, "samples per job", 10_000),
  maxTokens: positiveInt("max-tokens", 16, "most tokens per sample", 4096),
  concurrency: positiveInt("concurrency", 2, "jobs in flight on each worker", 1024),
  repeats: positiveInt("repeats", 3, "timed rounds, each running every worker count once, after an untimed warm-up of each", 100),
  kvDtype: kvDtypeFlag,
  redisServer: Flag.String("redis-server").pipe(Flag.withDescription("the redis-server program to start (default: redis-server on the PATH)"), Flag.withDefault("redis-server")),
  json: Flag.String("json").pipe(Flag.withDescription("write the figures as JSON here"), Flag.optional)
}

export type BenchQueueFlags = Command.Command.Config.Infer<typeof flags>

export const benchQueueCommand = Command.make("queue", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/queue.ts")), (m) => m.run(input))
).pipe(Command.withDescription("The distributed pipeline on 1, 2 and 3 local workers over its own redis-server: throughput of each, nothing lost or repeated"))
