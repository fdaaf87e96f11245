export type { LevelPlan, LevelPlanLevel } from "./LevelPlan.ts"
export { BlockPool, BlockPoolExhausted, type BlockPoolStats } from "./BlockPool.ts"
export {
  type BlockCopy,
  type MatchResult,
  type Placement,
  PrefixTree,
  type SeqId,
  type SequenceView,
  type TreeNode,
  type TreeStats,
  UnknownSequence
} from "./PrefixTree.ts"
export { LevelPlanner } from "./LevelPlanner.ts"
export { planLevels } from "./planLevels.ts"
export { benchPlan, type BenchPlanOptions, type BenchPlanResult } from "./benchPlan.ts"
export { mulberry32 } from "./random.ts"
