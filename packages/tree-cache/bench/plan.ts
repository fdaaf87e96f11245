// Prints the time planLevels takes on the three-level sampling tree.
// Run from the workspace root: node --import tsx packages/tree-cache/bench/plan.ts
import { benchPlan } from "../src/benchPlan.ts"

const r = benchPlan()
const rows: Array<[string, string]> = [
  ["sequences", String(r.sequences)],
  ["levels", String(r.levels)],
  ["planned nodes", String(r.nodes)],
  ["partial states", String(r.partials)],
  ["block indices", String(r.blocks)],
  ["iterations", String(r.iterations)],
  ["median µs/plan", r.medianUs.toFixed(1)],
  ["p90 µs/plan", r.p90Us.toFixed(1)],
  ["min µs/plan", r.minUs.toFixed(1)],
  ["mean µs/plan", r.meanUs.toFixed(1)]
]
const width = Math.max(...rows.map(([k]) => k.length))
for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v.padStart(8)}`)
