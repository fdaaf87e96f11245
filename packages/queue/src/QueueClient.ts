/**
 * One connection to the queue's Redis, as an Effect service. Acquiring it
 * checks the URL, connects and fails with QueueUnavailable when nothing
 * answers; once connected, a dropped connection is retried for as long as it
 * takes (a Redis restart holds commands back, it does not fail them).
 * Releasing it closes the BullMQ queues made on it and the connection.
 */
import { Queue } from "bullmq"
import { Redis } from "ioredis"
import { Context, Effect, Layer } from "effect"
import { messageOf, type QueueError, QueueUnavailable } from "./errors.ts"
import { KEY_PREFIX, queueName } from "./keys.ts"
import type { JobData } from "./spec.ts"
import { defineScripts } from "./scripts.ts"
import { parseQueueUrl, type QueueAddress, redisOptions } from "./url.ts"

export interface QueueConnection {
  readonly address: QueueAddress
  readonly redis: Redis
  /** The BullMQ queue of a prefix group, made once per connection. */
  readonly queue: (group: string) => Queue<JobData>
  readonly close: () => Promise<void>
}

/** Connects, or fails with the error Redis gave (a refused connection, a wrong password, a database past the server's count). */
export const openConnection = async (url: string): Promise<QueueConnection> => {
  const address = parseQueueUrl(url)
  const redis = new Redis({ ...redisOptions(address), lazyConnect: true })
  let lastError = ""
  // ioredis reports connection errors as events; without a listener it prints them
  redis.on("error", (e: unknown) => void (lastError = messageOf(e)))
  try {
    await redis.connect()
    await redis.ping()
  } catch (e) {
    redis.disconnect()
    throw new QueueUnavailable({ url: address.shown, problem: lastError !== "" ? lastError : messageOf(e) })
  }
  defineScripts(redis)
  const queues = new Map<string, Queue<JobData>>()
  return {
    address,
    redis,
    queue: (group) => {
      let queue = queues.get(group)
      if (queue === undefined) {
        queue = new Queue<JobData>(queueName(group), { connection: redis, prefix: KEY_PREFIX })
        queue.on("error", () => {}) // the connection's own listener has it
        queues.set(group, queue)
      }
      return queue
    },
    close: async () => {
      await Promise.all([...queues.values()].map((q) => q.close().catch(() => {})))
      await redis.quit().catch(() => redis.disconnect())
    }
  }
}

export class QueueClient extends Context.Service<QueueClient, QueueConnection>()("@canopy/queue/QueueClient") {
  /** The queue at `url` for the layer's lifetime. */
  static readonly layer = (url: string): Layer.Layer<QueueClient, QueueError> =>
    Layer.effect(
      QueueClient,
      Effect.acquireRelease(
        Effect.tryPromise({ try: () => openConnection(url), catch: (e) => e as QueueError }),
        (connection) => Effect.promise(() => connection.close())
      )
    )
}

/** A Redis command (or several) as an Effect; a failure is QueueUnavailable naming the queue. */
export const redisCall = <A>(connection: QueueConnection, run: () => Promise<A>): Effect.Effect<A, QueueUnavailable> =>
  Effect.tryPromise({ try: run, catch: (e) => new QueueUnavailable({ url: connection.address.shown, problem: messageOf(e) }) })
