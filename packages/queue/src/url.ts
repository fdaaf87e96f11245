/**
 * `--queue redis://[user:password@]HOST:PORT/N`: where the queue lives. The
 * URL is checked before anything connects, and shown without its password.
 */
import { InvalidQueueUrl } from "./errors.ts"

export interface QueueAddress {
  /** the URL as messages show it: the password replaced by *** */
  readonly shown: string
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username?: string
  readonly password?: string
  readonly tls: boolean
}

/** Redis' default database count; a server configured with more takes larger N, one with fewer refuses it when connecting. */
const MAX_DB = 1 << 16

export const parseQueueUrl = (url: string): QueueAddress => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidQueueUrl({ url, problem: "not a URL; give redis://HOST:PORT/N (for example redis://127.0.0.1:6379/0)" })
  }
  const shown = parsed.password !== "" ? url.replace(`:${parsed.password}@`, ":***@") : url
  const bad = (problem: string): never => {
    throw new InvalidQueueUrl({ url: shown, problem })
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") bad(`the scheme must be redis:// or rediss:// (TLS), got ${parsed.protocol}//`)
  if (parsed.hostname === "") bad("names no host")
  const port = parsed.port === "" ? 6379 : Number(parsed.port)
  const dbText = parsed.pathname.replace(/^\//, "")
  const db = dbText === "" ? 0 : Number(dbText)
  if (!/^\d*$/.test(dbText) || !Number.isInteger(db) || db >= MAX_DB) bad(`the path must be a database number /N (0 to ${MAX_DB - 1}), got ${JSON.stringify(parsed.pathname)}`)
  if (parsed.search !== "" || parsed.hash !== "") bad("takes no query or fragment")
  return {
    shown,
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    db,
    ...(parsed.username !== "" ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password !== "" ? { password: decodeURIComponent(parsed.password) } : {}),
    tls: parsed.protocol === "rediss:"
  }
}

/**
 * ioredis options for the address. `maxRetriesPerRequest: null` is what
 * BullMQ's workers need (a command waits through a reconnect instead of
 * failing), and what lets a run ride out a Redis restart.
 */
export const redisOptions = (address: QueueAddress) => ({
  host: address.host,
  port: address.port,
  db: address.db,
  ...(address.username !== undefined ? { username: address.username } : {}),
  ...(address.password !== undefined ? { password: address.password } : {}),
  ...(address.tls ? { tls: {} } : {}),
  maxRetriesPerRequest: null,
  // reconnect quickly at first, then every 2 s at most
  retryStrategy: (times: number): number => Math.min(100 * times, 2_000)
})
