import { openGpu, timeGpu } from "@canopy/kernels"
import { Forward } from "./src/model/forward.ts"
import { PRESETS } from "./src/model/synthetic.ts"
import { synthesizeWeights } from "./src/model/weights.ts"

const gpu = await openGpu()
const device = gpu.device
const c = PRESETS.tiny
const weights = await synthesizeWeights(device, c, 1)
const BLOCK = 16, BLOCKS = 16
const kvDim = c.numKvHeads * c.headDim
const pools = Array.from({ length: c.numLayers }, () => ({
  k: device.createBuffer({ size: BLOCK * BLOCKS * kvDim * 4, usage: GPUBufferUsage.STORAGE }),
  v: device.createBuffer({ size: BLOCK * BLOCKS * kvDim * 4, usage: GPUBufferUsage.STORAGE })
}))
const fwd = await Forward.create(device, weights, {
  maxRows: 64, maxLogitRows: 64, kvPools: pools, blockSize: BLOCK, numBlocks: BLOCKS, attention: () => {}
})
const opts = { warmup: 1, repeats: Number(process.env.REPEATS ?? 5) }
const results: Record<string, Record<number, number>> = {}
for (const rows of (process.env.ROWS ?? "1,8,64").split(",").map(Number)) {
  const batch = {
    tokens: Uint32Array.from({ length: rows }, (_, i) => i % 250),
    positions: Uint32Array.from({ length: rows }, (_, i) => i),
    slots: Uint32Array.from({ length: rows * 2 }, (_, i) => (i % 2 === 0 ? Math.floor(i / 2 / BLOCK) : (i / 2) % BLOCK)),
    logitRows: Uint32Array.from({ length: rows }, (_, i) => i),
    sampling: Array.from({ length: rows }, (_, i) => ({ temperature: 0.8, topK: 40, topP: 0.9, seed: 1, sequence: i, step: 0 }))
  }
  const total = await timeGpu(device, (e) => fwd.encode(e, batch), opts)
  ;(results["TOTAL forward"] ??= {})[rows] = total.medianMs
  const f = fwd as any
  const named: Array<[string, any]> = [["embed", f.embed]]
  const l0 = f.layers[0]
  for (const k of Object.keys(l0)) named.push([k, l0[k]])
  for (const k of Object.keys(f.tail)) named.push([`tail.${k}`, f.tail[k]])
  for (const [name, d] of named) {
    const t = await timeGpu(device, (e) => { const p = e.beginComputePass(); d.encode(p, rows); p.end() }, opts)
    ;(results[name] ??= {})[rows] = t.medianMs
  }
}
console.log(JSON.stringify(results))
for (const [k, v] of Object.entries(results)) console.log(k.padEnd(16), Object.entries(v).map(([r, ms]) => `${r}:${ms.toFixed(2)}`).join("  "))
gpu.close()
