/**
 * The flags of the commands that use a queue: where it is, and which pool
 * of workers a run goes to.
 */
// the URL module alone: the package itself loads the Redis client and the engine, which `--help` must not
import { parseQueueUrl } from "@canopy/queue/url"
import { Flag } from "effect/cli"

/** `--queue redis://HOST:PORT/N`, checked as it is parsed (a bad URL is a flag error, before anything connects). */
export const queueFlag = Flag.String("queue").pipe(
  Flag.withDescription("the queue's Redis, redis://HOST:PORT/N (rediss:// for TLS; redis://:PASSWORD@HOST:PORT/N with a password)"),
  Flag.mapTryCatch((url) => (parseQueueUrl(url), url), (e) => (e instanceof Error ? e.message : String(e)))
)

export const poolFlag = Flag.String("pool").pipe(
  Flag.withDescription("the pool of workers that serves the run (default: the default pool); a worker serves one pool"),
  Flag.filter((p) => /^[\w.-]{1,64}$/.test(p), (p) => `--pool must be 1 to 64 letters, digits, ".", "-" or "_", got ${JSON.stringify(p)}`),
  Flag.optional
)
