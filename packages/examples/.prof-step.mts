import { openGpu } from "@canopy/kernels"
import { runStepBench } from "./src/bench/stepBench.ts"
const gpu = await openGpu()
const points = await runStepBench(gpu.device, { preset: "codellama-13b", layers: 1, heads: 1, batches: [1024], warmup: 1, steps: 3 })
console.log(JSON.stringify(points.map((p) => [p.hostMsSteps, p.phases])))
gpu.close()
