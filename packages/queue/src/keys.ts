/**
 * Where everything lives in Redis. BullMQ keeps its queues under the same
 * prefix (`canopy:prefix-<group>:…`); the rest is Canopy's own:
 *
 *   canopy:runs                      sorted set: run ids by creation time
 *   canopy:run:{R}                   hash: the run's spec (JSON), its group, created
 *   canopy:run:{R}:problems          hash: problem index → {id, prompt, seed}
 *   canopy:run:{R}:samples           hash: "problem:sample" → the sample (written once: HSETNX)
 *   canopy:run:{R}:progress          hash: samples, tokens, problems, p<index> (samples of each problem)
 *   canopy:run:{R}:workers           hash: "<worker>|samples" and "|tokens", "|jobs", "|prefill", "|reused", "|prompt"
 *   canopy:run:{R}:jobs              hash: job id → the last record of its completion
 *   canopy:run:{R}:failures          hash: job id → why it failed for good
 *   canopy:groups                    hash: group id → {model, kvDtype, pool, prefixChars}
 *   canopy:group:<G>:prefix          string: the group's shared prefix text
 *   canopy:group:<G>:serving         sorted set: worker id → when its lease on the group ends (ms)
 *   canopy:workers                   sorted set: worker id → its last heartbeat (ms)
 *   canopy:worker:<W>                string (expiring): the worker's status, JSON
 *   canopy:errors                    list: workers that could not start, newest first (kept to 100)
 *
 * The run id sits in braces, a Redis Cluster hash tag: a run's keys share a
 * slot, so the sample-writing script may touch several of them.
 */
export const KEY_PREFIX = "canopy"

const run = (id: string) => `${KEY_PREFIX}:run:{${id}}`

export const keys = {
  runs: `${KEY_PREFIX}:runs`,
  run,
  problems: (id: string) => `${run(id)}:problems`,
  samples: (id: string) => `${run(id)}:samples`,
  progress: (id: string) => `${run(id)}:progress`,
  runWorkers: (id: string) => `${run(id)}:workers`,
  jobs: (id: string) => `${run(id)}:jobs`,
  failures: (id: string) => `${run(id)}:failures`,
  groups: `${KEY_PREFIX}:groups`,
  groupPrefix: (group: string) => `${KEY_PREFIX}:group:${group}:prefix`,
  serving: (group: string) => `${KEY_PREFIX}:group:${group}:serving`,
  workers: `${KEY_PREFIX}:workers`,
  worker: (id: string) => `${KEY_PREFIX}:worker:${id}`,
  errors: `${KEY_PREFIX}:errors`
} as const

/** The BullMQ queue of a prefix group. */
export const queueName = (group: string): string => `prefix-${group}`

/** The field of a sample in the run's samples hash. */
export const sampleField = (problem: number, sample: number): string => `${problem}:${sample}`
