/**
 * The Lua scripts that make the queue's own writes atomic: a sample written
 * once with its counters, and a claim on a prefix group that only one worker
 * can win. Redis runs a script with nothing else in between.
 */
import type { Redis, Result } from "ioredis"

/**
 * KEYS: samples, progress, run workers. ARGV: field, record, problem index,
 * samples per problem, tokens, worker. Writes the record only if the field is
 * new (HSETNX) and only then counts it: a redone job's samples count once.
 * Returns 1 when written, 0 when the sample was there already.
 */
const WRITE_SAMPLE = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'samples', 1)
redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[5])
if redis.call('HINCRBY', KEYS[2], 'p' .. ARGV[3], 1) == tonumber(ARGV[4]) then redis.call('HINCRBY', KEYS[2], 'problems', 1) end
redis.call('HINCRBY', KEYS[3], ARGV[6] .. '|samples', 1)
redis.call('HINCRBY', KEYS[3], ARGV[6] .. '|tokens', ARGV[5])
return 1
`

/**
 * KEYS: the group's serving set. ARGV: worker, now (ms), lease end (ms).
 * Drops lapsed leases; takes the group when no other worker holds a lease.
 * Returns 1 when this worker now serves the group, 0 when another does.
 */
const CLAIM_GROUP = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if n == 0 or (n == 1 and redis.call('ZSCORE', KEYS[1], ARGV[1])) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
`

declare module "ioredis" {
  interface RedisCommander<Context> {
    canopyWriteSample(
      samples: string, progress: string, runWorkers: string,
      field: string, record: string, problem: number, samplesPerProblem: number, tokens: number, worker: string
    ): Result<number, Context>
    canopyClaimGroup(serving: string, worker: string, now: number, leaseEnd: number): Result<number, Context>
  }
}

export const defineScripts = (redis: Redis): void => {
  redis.defineCommand("canopyWriteSample", { numberOfKeys: 3, lua: WRITE_SAMPLE })
  redis.defineCommand("canopyClaimGroup", { numberOfKeys: 1, lua: CLAIM_GROUP })
}
