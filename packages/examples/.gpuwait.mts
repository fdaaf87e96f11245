import { openGpu } from "@canopy/kernels"
import { runStepBench } from "./src/bench/stepBench.ts"
const gpu = await openGpu()
const points = await runStepBench(gpu.device, { preset: "codellama-13b", layers: 40, heads: 1, batches: [1024], warmup: 1, steps: 2 })
console.log(points[0]!.hostMsSteps, points[0]!.phases, points[0]!.hostWallMs)
gpu.close()
