/**
 * What /metrics reports, in Prometheus' text format (version 0.0.4): the
 * waiting line, the KV cache, prefix-cache hits, tokens and their rate, and
 * requests by endpoint and status.
 */
import type { GenerateStats, TreeEngine } from "@canopy/runtime"
import type { QueueStats } from "./scheduler.ts"

/** Tokens/s is measured over this many most recent seconds. */
const RATE_WINDOW_SECONDS = 10

export class Metrics {
  private readonly requests = new Map<string, number>()
  promptTokens = 0
  prefillTokens = 0
  reusedTokens = 0
  generatedTokens = 0
  private ttftSum = 0
  private ttftCount = 0
  private durationSum = 0
  private durationCount = 0
  /** tokens per whole second, the last RATE_WINDOW_SECONDS of them */
  private readonly perSecond = new Map<number, number>()

  request(endpoint: string, status: number): void {
    const key = `${endpoint}\u0000${status}`
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1)
  }

  token(now = performance.now()): void {
    const second = Math.floor(now / 1000)
    this.perSecond.set(second, (this.perSecond.get(second) ?? 0) + 1)
    if (this.perSecond.size > RATE_WINDOW_SECONDS + 2) {
      for (const s of this.perSecond.keys()) if (s <= second - RATE_WINDOW_SECONDS - 1) this.perSecond.delete(s)
    }
    this.generatedTokens++
  }

  firstToken(seconds: number): void {
    this.ttftSum += seconds
    this.ttftCount++
  }

  finished(stats: GenerateStats): void {
    this.promptTokens += stats.promptTokens
    this.prefillTokens += stats.prefillTokens
    this.reusedTokens += stats.reusedTokens
    this.durationSum += stats.totalSeconds
    this.durationCount++
  }

  /** generated tokens per second over the last complete seconds of the window */
  tokensPerSecond(now = performance.now()): number {
    const current = Math.floor(now / 1000)
    let sum = 0
    for (const [s, n] of this.perSecond) if (s < current && s >= current - RATE_WINDOW_SECONDS) sum += n
    return sum / RATE_WINDOW_SECONDS
  }

  render(queue: QueueStats, engine: TreeEngine, modelId: string): string {
    const lines: Array<string> = []
    const metric = (name: string, type: "gauge" | "counter" | "summary", help: string, samples: ReadonlyArray<readonly [string, number]>) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${Number.isFinite(value) ? value : 0}`)
    }
    const summary = (name: string, help: string, sum: number, count: number) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} summary`, `${name}_sum${model} ${sum}`, `${name}_count${model} ${count}`)
    }
    const model = `{model=${JSON.stringify(modelId)}}`
    const tree = engine.kv.tree.stats()
    metric("canopy_requests_running", "gauge", "Requests the engine is running.", [[model, queue.runningRequests]])
    metric("canopy_requests_waiting", "gauge", "Requests admitted and waiting for the engine.", [[model, queue.waitingRequests]])
    metric("canopy_sequences_running", "gauge", "Samples (sequences) of the running requests.", [[model, queue.runningSequences]])
    metric("canopy_sequences_waiting", "gauge", "Samples (sequences) of the waiting requests.", [[model, queue.waitingSequences]])
    metric("canopy_sequences_live", "gauge", "Sequences holding KV in the prefix tree right now.", [[model, tree.liveSequences]])
    metric("canopy_kv_blocks_used", "gauge", "KV blocks in use (live sequences and the cached prefixes).", [[model, tree.blocksUsed]])
    metric("canopy_kv_blocks_total", "gauge", "KV blocks in the pool.", [[model, tree.capacity]])
    metric("canopy_kv_block_size_tokens", "gauge", "Tokens per KV block.", [[model, tree.blockSize]])
    metric("canopy_kv_cached_tokens", "gauge", "Tokens whose KV the prefix tree holds.", [[model, tree.cachedTokens]])
    metric("canopy_prompt_tokens_total", "counter", "Prompt tokens over all samples (what a runtime without sharing would prefill).", [[model, this.promptTokens]])
    metric("canopy_prefill_tokens_total", "counter", "Prompt tokens prefilled.", [[model, this.prefillTokens]])
    metric("canopy_prefix_cache_hit_tokens_total", "counter", "Prompt tokens found in the prefix cache instead of prefilled.", [[model, this.reusedTokens]])
    metric("canopy_generation_tokens_total", "counter", "Tokens generated.", [[model, this.generatedTokens]])
    metric("canopy_generation_tokens_per_second", "gauge", `Tokens generated per second over the last ${RATE_WINDOW_SECONDS} s.`, [[model, this.tokensPerSecond()]])
    summary("canopy_time_to_first_token_seconds", "Time from a request's admission (its wait included) to its first token.", this.ttftSum, this.ttftCount)
    summary("canopy_engine_request_seconds", "Engine run time of finished requests.", this.durationSum, this.durationCount)
    const byStatus = [...this.requests].map(([key, n]) => {
      const [endpoint, status] = key.split("\u0000")
      return [`{endpoint=${JSON.stringify(endpoint)},status="${status}"}`, n] as const
    })
    metric("canopy_http_requests_total", "counter", "HTTP requests answered, by endpoint and status.", byStatus)
    return `${lines.join("\n")}\n`
  }
}
