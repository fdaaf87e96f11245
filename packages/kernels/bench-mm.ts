import { openGpu } from "./src/gpu/device.ts"
import { timeGpu } from "./src/gpu/timing.ts"
import { createComputePipeline, uploadBuffer, createStorageBuffer } from "./src/gpu/resources.ts"
import { MatmulKernel } from "./src/model/matmul.ts"
import { createRowCount, bindAll, createUniform, packParams, MAX_GRID, grid2 } from "./src/model/common.ts"

const gen = (RB: number, CB: number, WG: number, RPI: number, V: number): string => {
  const T = V === 4 ? "vec4f" : "f32"
  const I = [...Array(RB).keys()], J = [...Array(CB).keys()]
  const red = (a: string) => V === 4 ? `(${a}.x + ${a}.y + ${a}.z + ${a}.w)` : a
  return `
struct Params { inDim: u32, outDim: u32, hasBias: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
@group(0) @binding(3) var<storage, read> w: array<${T}>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
fn finish(r: u32, o: u32, dot: f32) {
  var v = dot;
  if (params.hasBias != 0u) { v += bias[o]; }
  let at = r * params.outDim + o;
  if (params.accumulate != 0u) { v += y[at]; }
  y[at] = v;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.y * ${MAX_GRID}u + wg.x) * ${WG}u + li;
  let rows = count.x;
  let colBlocks = (params.outDim + ${CB - 1}u) / ${CB}u;
  let c0 = (id % colBlocks) * ${CB}u;
  let rStart = (id / colBlocks) * ${RPI}u;
  if (rStart >= rows) { return; }
  let rEnd = min(rows, rStart + ${RPI}u);
  let n = params.inDim / ${V}u;
  ${J.map((j) => `let w${j} = min(c0 + ${j}u, params.outDim - 1u) * n;`).join("\n  ")}
  for (var r0 = rStart; r0 < rEnd; r0 += ${RB}u) {
    ${I.map((i) => `let x${i} = min(r0 + ${i}u, rEnd - 1u) * n;`).join("\n    ")}
    ${I.flatMap((i) => J.map((j) => `var a${i}_${j} = ${T}();`)).join("\n    ")}
    for (var k = 0u; k < n; k++) {
      ${I.map((i) => `let xv${i} = x[x${i} + k];`).join(" ")}
      ${J.map((j) => `let wv${j} = w[w${j} + k];`).join(" ")}
      ${I.flatMap((i) => J.map((j) => `a${i}_${j} += xv${i} * wv${j};`)).join(" ")}
    }
    ${I.flatMap((i) => J.map((j) => `if (r0 + ${i}u < rEnd && c0 + ${j}u < params.outDim) { finish(r0 + ${i}u, c0 + ${j}u, ${red(`a${i}_${j}`)}); }`)).join("\n    ")}
  }
}`
}

const gpu = await openGpu()
const device = gpu.device
const opts = { warmup: 1, repeats: 9 }
const base = await MatmulKernel.create(device)
const shapes = (process.env.SHAPES ?? "256x64,64x128,260x64").split(",").map((s) => s.split("x").map(Number) as [number, number])
const configs = (process.env.CONFIGS ?? "1,1,64,8,4;1,1,16,8,4;1,4,16,8,4;2,2,16,8,4;4,4,16,4,4;4,4,16,16,4;1,1,16,1,4;2,4,16,8,4;4,4,16,8,1").split(";").map((s) => s.split(",").map(Number) as [number, number, number, number, number])
const rowList = (process.env.ROWS ?? "1,8,64,256").split(",").map(Number)
const pipes = await Promise.all(configs.map(([a, b, c, d, e]) => createComputePipeline(device, "x", gen(a, b, c, d, e))))
for (const [outDim, inDim] of shapes) {
  const maxRows = Math.max(...rowList)
  const x = uploadBuffer(device, "x", Float32Array.from({ length: maxRows * inDim }, (_, i) => Math.sin(i)))
  const w = uploadBuffer(device, "w", Float32Array.from({ length: outDim * inDim }, (_, i) => Math.cos(i)))
  const y = createStorageBuffer(device, "y", maxRows * outDim * 4)
  const bias = createStorageBuffer(device, "b", outDim * 4)
  for (const rows of rowList) {
    const count = createRowCount(device, "c", rows)
    const params = createUniform(device, "p", packParams([["u32", inDim], ["u32", outDim], ["u32", 0], ["u32", 0]]))
    const bound = base.bind({ x, w, y, count: count.buffer, inDim, outDim })
    const line: Array<string> = []
    const t0 = await timeGpu(device, (e) => { const p = e.beginComputePass(); bound.encode(p, rows); p.end() }, opts)
    line.push(`base ${t0.minMs.toFixed(2)}`)
    for (let ci = 0; ci < configs.length; ci++) {
      const [RB, CB, WG, RPI] = configs[ci]!
      const pipe = pipes[ci]!
      const bg = bindAll(device, pipe, "b", [params, count.buffer, x, w, bias, y])
      const inv = Math.ceil(outDim / CB) * Math.ceil(rows / RPI)
      const [gx, gy] = grid2(Math.ceil(inv / WG))
      const t = await timeGpu(device, (e) => { const p = e.beginComputePass(); p.setPipeline(pipe); p.setBindGroup(0, bg); p.dispatchWorkgroups(gx, gy); p.end() }, opts)
      line.push(`[${configs[ci]!.join(",")}] ${t.minMs.toFixed(2)}`)
    }
    console.log(`${outDim}x${inDim} rows ${rows}: ${line.join(" | ")}`)
  }
}
gpu.close()
