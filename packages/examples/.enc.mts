import { openGpu, createTreeAttention } from "@canopy/kernels"
import { Forward, KvCache, loadModel } from "@canopy/runtime"
import { planLevels } from "@canopy/tree-cache"
import { stepModelConfig } from "./src/bench/stepBench.ts"
const gpu = await openGpu(); const device = gpu.device
const config = stepModelConfig("codellama-13b", 40, 1)
const model = await loadModel(device, { kind: "synthetic", model: config, seed: 0 })
const kv = await KvCache.create(device, config, { blockSize: 16, numBlocks: 1100, kvDtype: "f16" })
const att = await createTreeAttention(device, { heads: 1, kvHeads: 1, headDim: 8, blockSize: 16, poolShards: kv.shards, kvDtype: kv.kvDtype })
const fwd = await Forward.create(device, model.weights, { maxRows: 1024, maxLogitRows: 1024, kvPools: kv.pools, blockSize: 16, numBlocks: kv.numBlocks, poolShards: kv.shards, kvDtype: kv.kvDtype })
const B = Number(process.argv[2] ?? 1024)
const prefix = Array.from({ length: 64 }, (_, i) => 3 + i)
const ps = Array.from({ length: 8 }, (_, p) => kv.tree.insert([...prefix, ...Array.from({ length: 32 }, (_, i) => 100 + p * 40 + i)]).seq)
const seqs: number[] = []
for (let s = 0; s < B; s++) { const seq = kv.tree.fork(ps[s % 8]!); kv.tree.append(seq, [3 + Math.floor(s / 8)]); seqs.push(seq) }
const batch = { tokens: new Uint32Array(B), positions: new Uint32Array(B), slots: new Uint32Array(2 * B).fill(0xffffffff), logitRows: Uint32Array.from({ length: B }, (_, i) => i), sampling: Array.from({ length: B }, (_, r) => ({ temperature: 1, topK: 0, topP: 1, seed: 0, sequence: r, step: 0 })) }
const plan = planLevels(kv.tree, seqs)
for (let r = 0; r < 8; r++) {
  const prepared = att.prepare(plan)
  const t0 = performance.now()
  const e = device.createCommandEncoder()
  fwd.encode(e, batch, (en, _l, b) => att.encode(en, prepared, b))
  const t1 = performance.now()
  const cb = e.finish()
  const t2 = performance.now()
  if (r % 2 === 0) { device.queue.submit([cb]); }
  const t3 = performance.now()
  console.log(`encode ${(t1 - t0).toFixed(2)} finish ${(t2 - t1).toFixed(2)} submit ${(t3 - t2).toFixed(2)} ${r % 2 === 0 ? "submitted" : "dropped"}`)
  if (r % 2 === 0) await device.queue.onSubmittedWorkDone()
  prepared.destroy()
  await new Promise((res) => setTimeout(res, 50))
}
gpu.close(); process.exit(0)
