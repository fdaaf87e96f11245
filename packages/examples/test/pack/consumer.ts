/**
 * A user's program against the published packages. pack.test.ts type-checks
 * and compiles it in a new project outside the workspace, where its imports
 * resolve to the installed tarballs, and runs it there; the test also imports
 * `decodeCases` from the workspace, where the same imports resolve to the
 * sources, for the tokens to compare with.
 *
 *   node consumer.js < cases.json   →   {"tokens": …, "resolved": …, "entries": …}
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { BlockPool } from "@canopy/tree-cache"
import { openGpu } from "@canopy/kernels"
import { openSession, prompt, type PromptNode, type PromptPiece } from "@canopy/runtime/prompt"
import { CanopyServer } from "@canopy/server"

/** A prompt tree as data: each node's piece, how many samples it asks for, its children. */
export interface CaseNode {
  readonly piece: PromptPiece
  readonly samples: number
  readonly children: ReadonlyArray<CaseNode>
}

/** For each case, for each node in `walk()` order, each sample's tokens. */
export type DecodedTokens = Array<Array<Array<ReadonlyArray<number>>>>

const build = (spec: CaseNode): PromptNode => {
  const root = prompt(spec.piece).sample(spec.samples)
  const pending: Array<[PromptNode, CaseNode]> = [[root, spec]]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, { children }] = next
    for (const child of children) pending.push([node.child(child.piece).sample(child.samples), child])
  }
  return root
}

/** Greedy-decodes every case in one session with the synthetic tiny model on the software adapter. */
export const decodeCases = async (cases: ReadonlyArray<CaseNode>, maxTokens: number): Promise<DecodedTokens> => {
  const session = await openSession({ model: "synthetic:tiny", gpu: { adapter: "software" } })
  try {
    const decoded: DecodedTokens = []
    for (const spec of cases) {
      const root = build(spec)
      const run = await session.run(root, { sampling: { temperature: 0, maxTokens } })
      decoded.push([...root.walk()].map((node) => run.completions(node).map((c) => c.tokens)))
    }
    return decoded
  } finally {
    await session.close()
  }
}

// Run as a program (not imported): the cases on standard input, the answer on standard output.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { cases, maxTokens } = JSON.parse(readFileSync(0, "utf8")) as { cases: Array<CaseNode>; maxTokens: number }
  const tokens = await decodeCases(cases, maxTokens)
  const resolved = ["@canopy/tree-cache", "@canopy/kernels", "@canopy/runtime", "@canopy/runtime/prompt", "@canopy/server"].map((name) => import.meta.resolve(name))
  const entries = { "@canopy/tree-cache": typeof BlockPool, "@canopy/kernels": typeof openGpu, "@canopy/server": typeof CanopyServer }
  process.stdout.write(JSON.stringify({ tokens, resolved, entries }))
}
