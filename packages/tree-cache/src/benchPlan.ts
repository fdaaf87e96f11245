import { BlockPool } from "./BlockPool.ts"
import { PrefixTree, type SeqId } from "./PrefixTree.ts"
import { LevelPlanner } from "./LevelPlanner.ts"
import { planLevels } from "./planLevels.ts"
import { mulberry32 } from "./random.ts"

export interface BenchPlanOptions {
  /** shared few-shot prefix (level 0) */
  readonly prefixTokens?: number
  /** problem statements under the prefix (level 1) */
  readonly problems?: number
  readonly problemTokens?: number
  /** sampled solutions per problem (level 2) */
  readonly samplesPerProblem?: number
  readonly sampleTokens?: number
  readonly blockSize?: number
  /** plans timed per round */
  readonly iterations?: number
  /** rounds of `iterations` plans (default 3): their medians give the figure's spread */
  readonly rounds?: number
  /** untimed plans before the first round, for the JIT and caches */
  readonly warmup?: number
  readonly seed?: number
}

export interface BenchPlanResult {
  readonly sequences: number
  readonly levels: number
  readonly nodes: number
  readonly partials: number
  readonly blocks: number
  /** plans timed per round */
  readonly iterations: number
  readonly rounds: number
  /** the median of the rounds' medians */
  readonly medianUs: number
  /** each round's median, in round order */
  readonly roundMedianUs: ReadonlyArray<number>
  /** over every timed plan */
  readonly p10Us: number
  readonly p90Us: number
  readonly minUs: number
  readonly meanUs: number
  /** the same figures of a LevelPlanner refreshing its last plan (the decode steps' planning), timed in alternation with planLevels */
  readonly refresh: { readonly medianUs: number; readonly roundMedianUs: ReadonlyArray<number>; readonly p10Us: number; readonly p90Us: number }
}

/**
 * Times planLevels on the three-level tree of a sampling workload: one
 * few-shot prefix, `problems` statements under it, `samplesPerProblem` live
 * samples under each. Samples are grown one token at a time, as decoding
 * grows them, and only the samples stay live.
 *
 * Beside each plan, timed in alternation with it, a LevelPlanner refreshes
 * its last plan of the same samples (their paths unchanged): what a decode
 * step's planning costs in the engine.
 *
 * After `warmup` untimed plans, `rounds` rounds of `iterations` plans each:
 * the figure is the median of the rounds' medians, and the rounds' spread
 * shows how much it moved while it was measured (other processes, clocks).
 */
export function benchPlan(options: BenchPlanOptions = {}): BenchPlanResult {
  const {
    prefixTokens = 2000,
    problems = 8,
    problemTokens = 300,
    samplesPerProblem = 128,
    sampleTokens = 100,
    blockSize = 16,
    iterations = 2000,
    rounds = 3,
    warmup = 200,
    seed = 1
  } = options
  const random = mulberry32(seed)
  const vocab = 32000
  const draw = (n: number) => Array.from({ length: n }, () => Math.floor(random() * vocab))

  const numSamples = problems * samplesPerProblem
  const numBlocks =
    Math.ceil(prefixTokens / blockSize) + 1 +
    problems * (Math.ceil(problemTokens / blockSize) + 1) +
    numSamples * (Math.ceil(sampleTokens / blockSize) + 1)
  const tree = new PrefixTree(new BlockPool({ numBlocks, blockSize }))

  const prefix = draw(prefixTokens)
  const prompt = tree.insert(prefix).seq
  const samples: SeqId[] = []
  for (let p = 0; p < problems; p++) {
    const problem = tree.insert([...prefix, ...draw(problemTokens)]).seq
    for (let j = 0; j < samplesPerProblem; j++) samples.push(tree.fork(problem))
    tree.release(problem)
  }
  tree.release(prompt)
  for (let i = 0; i < sampleTokens; i++) {
    for (let s = 0; s < samples.length; s++) {
      // Distinct first tokens keep every sample on its own level-2 node.
      tree.append(samples[s]!, [i === 0 ? s % samplesPerProblem : Math.floor(random() * vocab)])
    }
  }

  const planner = new LevelPlanner()
  let plan = planLevels(tree, samples)
  for (let i = 0; i < warmup; i++) {
    plan = planLevels(tree, samples)
    planner.plan(tree, samples)
  }
  const roundCount = Math.max(1, rounds)
  const times = new Float64Array(iterations * roundCount)
  const refreshTimes = new Float64Array(iterations * roundCount)
  const roundMedianUs: Array<number> = []
  const refreshRoundMedianUs: Array<number> = []
  for (let r = 0; r < roundCount; r++) {
    const round = times.subarray(r * iterations, (r + 1) * iterations)
    const refreshRound = refreshTimes.subarray(r * iterations, (r + 1) * iterations)
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now()
      plan = planLevels(tree, samples)
      const t1 = performance.now()
      planner.plan(tree, samples)
      refreshRound[i] = (performance.now() - t1) * 1000
      round[i] = (t1 - t0) * 1000
    }
    roundMedianUs.push(medianOf(round))
    refreshRoundMedianUs.push(medianOf(refreshRound))
  }
  if (planner.built !== 1) throw new Error(`bench plan: the planner built ${planner.built} plans of the same samples, not 1`)
  times.sort()
  refreshTimes.sort()
  let sum = 0
  for (const t of times) sum += t
  const at = (sorted: Float64Array, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

  let nodes = 0
  let blocks = 0
  for (const level of plan.levels) {
    nodes += level.nodeIds.length
    blocks += level.blockIndices.length
  }
  return {
    sequences: plan.numSequences,
    levels: plan.levels.length,
    nodes,
    partials: plan.numPartials,
    blocks,
    iterations,
    rounds: roundCount,
    medianUs: middle(roundMedianUs),
    roundMedianUs,
    p10Us: at(times, 0.1),
    p90Us: at(times, 0.9),
    minUs: times[0]!,
    meanUs: sum / times.length,
    refresh: { medianUs: middle(refreshRoundMedianUs), roundMedianUs: refreshRoundMedianUs, p10Us: at(refreshTimes, 0.1), p90Us: at(refreshTimes, 0.9) }
  }
}

const medianOf = (round: Float64Array): number => Float64Array.from(round).sort()[Math.floor(round.length / 2)]!

/** The median of the rounds' medians (the mean of the middle two for an even count). */
const middle = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const h = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[h]! : (sorted[h - 1]! + sorted[h]!) / 2
}
