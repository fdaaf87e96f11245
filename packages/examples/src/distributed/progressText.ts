/**
 * How a distributed run's progress reads: one status line while it runs
 * (problems, samples, and each worker's tokens/s), and the longer text of
 * `canopy status`.
 */
import type { RunProgress, RunWorker } from "@canopy/queue"

const secondsText = (s: number): string => (s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`)

const rate = (w: RunWorker): string => (w.live !== undefined ? `${w.live.tokensPerSecond.toFixed(1)} tok/s` : "gone")

/** The name a worker goes by in a line: its id. */
const workerPart = (w: RunWorker): string => `${w.id} ${rate(w)} (${w.samples})`

/** `run r1a2b: problems 3/10 · samples 24/80 · 2 workers: host-1 41.0 tok/s (12), host-2 39.5 tok/s (12) · 1 min 3 s` */
export const progressLineText = (p: RunProgress, now: number): string => {
  const live = p.workers.filter((w) => w.live !== undefined || w.samples > 0)
  const workers = live.length === 0
    ? `no worker serves ${p.run.model} (KV ${p.run.kvDtype}, pool ${p.run.pool}) yet`
    : `${live.length} worker${live.length === 1 ? "" : "s"}: ${live.map(workerPart).join(", ")}`
  return `run ${p.run.id}: problems ${p.problemsDone}/${p.run.problems} · samples ${p.samples}/${p.expected} · ${workers} · ` +
    secondsText((now - p.run.createdAt) / 1000)
}

const affinity = (w: RunWorker): string =>
  w.promptTokens > 0 ? `, prefilled ${w.prefillTokens} of ${w.promptTokens} prompt tokens (${w.reusedTokens} found cached)` : ""

/** What `canopy status RUN` prints. */
export const statusText = (p: RunProgress, now: number): Array<string> => {
  const lines = [
    `run ${p.run.id}: ${p.state}, enqueued ${new Date(p.run.createdAt).toISOString()} (${secondsText((now - p.run.createdAt) / 1000)} ago)`,
    `  ${p.run.problems} problems × ${p.run.samplesPerProblem} samples in ${p.run.jobs} jobs of up to ${p.run.blockSize}; model ${p.run.model}, KV ${p.run.kvDtype}, pool ${p.run.pool}`,
    `  problems ${p.problemsDone}/${p.run.problems} · samples ${p.samples}/${p.expected} · ${p.tokens} tokens`,
    `  prefix group ${p.run.group}: ${p.queue.waiting} jobs waiting, ${p.queue.active} active, ${p.queue.delayed} to be retried (every run with this prefix)`
  ]
  for (const w of p.workers) {
    const live = w.live !== undefined ? `${w.live.state}, ${w.live.inFlight} in flight, ${rate(w)}` : "no heartbeat"
    lines.push(`  worker ${w.id}: ${live}; ${w.jobs} jobs, ${w.samples} samples, ${w.tokens} tokens${affinity(w)}`)
  }
  for (const f of p.failures) lines.push(`  failed: job ${f.job} on ${f.worker} after ${f.attempts} attempts: ${f.error}: ${f.message}`)
  for (const f of p.startFailures) lines.push(`  worker ${f.worker} could not start: ${f.error}: ${f.message}`)
  return lines
}
