import { openGpu } from "@canopy/kernels"
import { loadModel, TreeEngine } from "./src/index.ts"
const gpu = await openGpu()
const model = await loadModel(gpu.device, { kind: "synthetic", model: "tiny", seed: 1 })
const engine = await TreeEngine.create(gpu.device, model, { maxBatch: 64 })
for (const attention of ["hydragen", "baseline"] as const) {
  const t = performance.now()
  const r = await engine.generate({
    tree: { text: "Few-shot examples here. ", children: [{ text: "Problem one?", samples: 3 }, { text: "Problem two!", samples: 2 }] },
    sampling: { temperature: 0, maxTokens: 12 },
    attention
  })
  console.log(attention, (performance.now() - t).toFixed(0), "ms", JSON.stringify(r.completions.map((c) => [c.path, c.sample, c.tokens.join(",")])))
  console.log(r.stats)
}
engine.destroy(); model.weights.destroy(); gpu.close()
process.exit(0)
