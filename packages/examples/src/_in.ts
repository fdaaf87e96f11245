import { BlockPool, PrefixTree } from "@canopy/tree-cache"
import { DecodeBatchBuilder, type DecodeRow } from "@canopy/runtime"
const tree = new PrefixTree(new BlockPool({ numBlocks: 20000, blockSize: 16 }))
const prefix = Array.from({ length: 64 }, (_, i) => 3 + i)
const probs = Array.from({ length: 8 }, (_, p) => tree.insert([...prefix, ...Array.from({ length: 32 }, (_, i) => 1000 * (p + 1) + i)]).seq)
const samples: number[] = []
for (let s = 0; s < 1024; s++) { const q = tree.fork(probs[s % 8]!); tree.append(q, [5000 + Math.floor(s / 8)]); samples.push(q) }
const rows: DecodeRow[] = samples.map((seq, r) => ({ seq, token: 5, written: tree.lengthOf(seq) - 1, sampling: { temperature: 1, topK: 0, topP: 1, seed: 0, sequence: r, step: 0 } }))
const b = new DecodeBatchBuilder(tree)
const t = (label: string, f: () => void) => {
  for (let i = 0; i < 3000; i++) f()
  const xs: number[] = []
  for (let r = 0; r < 30; r++) { const t0 = performance.now(); for (let i = 0; i < 100; i++) f(); xs.push((performance.now() - t0) / 100) }
  xs.sort((a, b) => a - b); console.log(label.padEnd(30), (xs[15]! * 1000).toFixed(1), "µs")
}
t("inputs", () => b.inputs(rows))
