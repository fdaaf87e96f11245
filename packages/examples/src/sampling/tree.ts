/**
 * The sampling workload as a prompt tree: the few-shot prefix, one node per
 * problem under it, and n samples at each problem node. Each problem node
 * has its own seed, derived from the run's seed and the problem's id (as a
 * distributed run's jobs do), so a problem's samples do not depend on which
 * other problems run with it, or where.
 */
import { problemSeed } from "@canopy/queue"
import type { Problem } from "../pipeline/problems.ts"
import { renderProblemPrompt } from "../pipeline/prompt.ts"
import { prompt, type PromptNode } from "@canopy/runtime/prompt"

export interface ProblemTree {
  readonly root: PromptNode
  readonly nodes: ReadonlyArray<{ readonly problem: Problem; readonly node: PromptNode }>
}

export const problemTree = (fewShot: string, problems: ReadonlyArray<Problem>, samplesPerProblem: number, runSeed = 0): ProblemTree => {
  const root = prompt(fewShot)
  const nodes = problems.map((problem) => ({
    problem,
    node: root.child(renderProblemPrompt(problem)).sample(samplesPerProblem, { seed: problemSeed(runSeed, problem.id) })
  }))
  return { root, nodes }
}
