import { openGpu } from "@canopy/kernels"
import { loadModel, TreeEngine } from "@canopy/runtime"
import { BUILTIN_PROBLEMS, FEW_SHOT_PROMPT, renderProblemPrompt, STOP_SEQUENCES } from "./src/pipeline/index.ts"
const gpu = await openGpu()
console.log("few-shot chars", FEW_SHOT_PROMPT.length)
const model = await loadModel(gpu.device, { kind: "synthetic", model: "tiny", seed: 0 })
const engine = await TreeEngine.create(gpu.device, model, {})
const samples = Number(process.argv[2] ?? 4), maxTokens = Number(process.argv[3] ?? 16)
const tree = { text: FEW_SHOT_PROMPT, children: BUILTIN_PROBLEMS.map((p) => ({ text: renderProblemPrompt(p), samples })) }
for (const [attention, sharing] of [["hydragen", "tree"], ["baseline", "tree"], ["hydragen", "single-level"]] as const) {
  const r = await engine.generate({ tree, sampling: { maxTokens, stop: STOP_SEQUENCES, seed: 1 }, attention, sharing })
  const { completions, ...rest } = r
  console.log(attention, sharing, JSON.stringify({ ...r.stats }), completions.map(c=>c.finishReason).join(","))
}
engine.destroy(); gpu.close(); process.exit(0)
