import { openGpu } from "./packages/kernels/src/gpu/device.ts"
import { createComputePipeline } from "./packages/kernels/src/gpu/resources.ts"
import { blockedCode } from "./packages/kernels/src/model/matmulBlocked.wgsl.ts"
import { gemvVec4Code } from "./packages/kernels/src/model/matmulGemvVec4.wgsl.ts"
const gpu = await openGpu()
const d = gpu.device
const m = { weights: "f32", input: "plain", width: 4 } as const
let code = gemvVec4Code(128, "workgroup", m)
const variants: Record<string, string> = {
  vwg: code,
  vwgUnrolledTree: code.replace(/for \(var s = 64u; s > 0u; s >>= 1u\) \{([\s\S]*?)\n  \}\n/, (_all, body) =>
    [64, 32, 16, 8, 4, 2, 1].map((s) => `{ let s = ${s}u; ${body} }`).join("\n") + "\n"),
  b128: blockedCode({ bm: 128, bn: 64, tm: 8, tn: 4 }, m),
  b64: blockedCode({ bm: 64, bn: 64, tm: 4, tn: 4 }, m),
}
for (const [name, code] of Object.entries(variants)) {
  const t = performance.now()
  await createComputePipeline(d, `${name}-${Math.random()}`, code)
  console.log(name, (performance.now() - t).toFixed(0), "ms")
}
gpu.close()
