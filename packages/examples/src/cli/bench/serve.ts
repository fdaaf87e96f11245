/**
 * `canopy bench serve`: load on the HTTP server, in this process, over
 * loopback only, bounded in requests and in time. N clients at once send
 * requests that share a few-shot prefix (completions and chat, streamed and
 * not, n from 1 to 3), some cancelling midway; the run reports requests/s,
 * time to first token and inter-token latency (p50/p99) and the prefix-cache
 * hit rate, and checks that every request got exactly its n completions or a
 * well-formed error, and that afterwards no sequence is live and every KV
 * block still in use is evictable cache.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { SERVER_DEFAULTS } from "../bounds.ts"
import { kvMemoryFlag, modelFlag, positiveInt, weightDtypeFlag } from "../flags.ts"

const flags = {
  model: modelFlag,
  clients: positiveInt("clients", 200, "clients sending at once", 10_000),
  requests: Flag.Int("requests").pipe(
    Flag.withDescription("requests in all (default: one per client)"),
    Flag.filter((n) => n >= 1 && n <= 100_000, (n) => `--requests must be from 1 to 100000, got ${n}`),
    Flag.optional
  ),
  seconds: positiveInt("seconds", 300, "stop sending and cancel what is left after this long", 3600),
  maxTokens: positiveInt("max-tokens", 16, "max_tokens of each request", 4096),
  maxRunning: positiveInt("max-running", SERVER_DEFAULTS.concurrency, "the server's requests running at once, batched together by the engine", 1_000_000),
  maxWaiting: Flag.Int("max-waiting").pipe(
    Flag.withDescription("the server's waiting line (default: the number of clients, so none is refused; lower it to see 429s)"),
    Flag.filter((n) => n >= 0, (n) => `--max-waiting must be at least 0, got ${n}`),
    Flag.optional
  ),
  kvMemory: kvMemoryFlag,
  dtype: weightDtypeFlag,
  json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here"), Flag.optional)
}

export type BenchServeFlags = Command.Command.Config.Infer<typeof flags>

export const benchServeCommand = Command.make("serve", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/serve.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Load on the HTTP server over loopback: N clients sharing a few-shot prefix; requests/s, TTFT, inter-token latency, cache hits"))
