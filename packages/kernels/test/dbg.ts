import { openGpu } from "../src/gpu/device.ts"
import { createTreeAttention } from "../src/attention/treeAttention.ts"
const gpu = await openGpu()
for (const [headDim, group] of [[8, 1], [40, 2], [56, 4], [88, 8], [128, 1], [128, 8]]) {
  const t = performance.now()
  const k = await createTreeAttention(gpu.device, { heads: group!, kvHeads: 1, headDim: headDim!, blockSize: 16 })
  console.log(headDim, group, (performance.now() - t).toFixed(0), JSON.stringify(k.levelTile), JSON.stringify(k.decodeTile))
  k.destroy()
}
gpu.close()
process.exit(0)
