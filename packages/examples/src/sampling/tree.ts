/**
 * The sampling workload as a prompt tree: the few-shot prefix, one node per
 * problem under it, and n samples at each problem node.
 */
import type { Problem } from "../pipeline/problems.ts"
import { renderProblemPrompt } from "../pipeline/prompt.ts"
import { prompt, type PromptNode } from "../prompt/PromptNode.ts"

export interface ProblemTree {
  readonly root: PromptNode
  readonly nodes: ReadonlyArray<{ readonly problem: Problem; readonly node: PromptNode }>
}

export const problemTree = (fewShot: string, problems: ReadonlyArray<Problem>, samplesPerProblem: number): ProblemTree => {
  const root = prompt(fewShot)
  const nodes = problems.map((problem) => ({ problem, node: root.child(renderProblemPrompt(problem)).sample(samplesPerProblem) }))
  return { root, nodes }
}
