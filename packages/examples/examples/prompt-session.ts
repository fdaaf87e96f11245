/**
 * A long-lived session: its engine keeps the KV cache between runs, so the
 * second run finds the few-shot prefix cached and prefills only its problem.
 *
 *   node --conditions=@canopy/source --import tsx examples/prompt-session.ts [model]   (default synthetic:tiny)
 */
import { FEW_SHOT_PROMPT, STOP_SEQUENCES } from "@canopy/examples/pipeline"
import { openSession, prompt } from "@canopy/runtime/prompt"

const session = await openSession({ model: process.argv[2] ?? "synthetic:tiny" })
try {
  for (const question of ["Print the sum of two integers.", "Print a line reversed."]) {
    const root = prompt(FEW_SHOT_PROMPT)
    const node = root.child(`\nQUESTION:\n${question}\nANSWER:\n\`\`\`python\n`).sample(4, { maxTokens: 16, stop: STOP_SEQUENCES })
    const { stats } = await session.run(root)
    console.log(`${question} ${node.samples} samples; prefilled ${stats.prefillTokens} tokens, reused ${stats.reusedTokens} from the cache`)
  }
} finally {
  await session.close()
}
