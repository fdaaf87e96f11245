/**
 * The prompt-tree library in a few lines: one few-shot prefix, two problems
 * under it, four samples each. The prefix is prefilled once for all eight.
 *
 *   node --conditions=@canopy/source --import tsx examples/few-shot-tree.ts [model]   (default synthetic:tiny)
 */
import { FEW_SHOT_PROMPT, STOP_SEQUENCES } from "@canopy/examples/pipeline"
import { prompt, runPromise } from "@canopy/runtime/prompt"

const root = prompt(FEW_SHOT_PROMPT)
const sum = root.child("\nQUESTION:\nRead two integers and print their sum.\nANSWER:\n```python\n").sample(4)
const rev = root.child("\nQUESTION:\nRead a line and print it reversed.\nANSWER:\n```python\n").sample(4)

const result = await runPromise(root, {
  model: process.argv[2] ?? "synthetic:tiny",
  sampling: { maxTokens: 16, temperature: 0.8, stop: STOP_SEQUENCES }
})
for (const [name, node] of [["sum", sum], ["reverse", rev]] as const) {
  for (const c of result.completions(node)) console.log(`${name} #${c.sample}: ${JSON.stringify(c.text)}`)
}
console.log(`prefilled ${result.stats.prefillTokens} prompt tokens; without sharing: ${result.stats.promptTokens}`)
