/**
 * "blocked64", "blocked128": Y = in(X)·Wᵀ (see matmulShared.wgsl.ts for in,
 * s_r and the epilogue) as a register-blocked GEMM for many rows. A workgroup
 * computes a BM×BN tile of Y; each invocation a TM×TN block of it (TM rows
 * and TN columns contiguous, so it reads them from workgroup memory as vec4s).
 * The inner dimension goes in slices of BK = 8, double buffered: the global
 * loads of slice s+1 are issued into registers before slice s is multiplied
 * out of workgroup memory and stored after it, into the other buffer, so one
 * barrier per slice suffices and the loads' latency hides behind the FMAs.
 *
 * Global loads are vec4 along the inner dimension when inDim % 4 = 0 (scalar
 * otherwise); the tiles are stored transposed ([k][m]) with rows of BM + 4
 * (BN + 4) floats: invocation c of a slice stores element (m, k) with
 * m = c / (BK/width), k = (c mod (BK/width))·width + j, and the stride's 4-bank
 * offset per k row spreads a warp's 32 stores over 32 banks, for both load
 * widths (with a stride of BM, k rows 4 apart would land on the same bank).
 *
 * An rmsnorm input: each invocation sums the squares of the X chunks it loads
 * (the same rows in every slice), and the sums are added up per row through
 * the X tile's memory after the last slice.
 */
import { wgsl } from "../gpu/resources.ts"
import { ifNorm, loadType, matmulHeader, type MatmulModule, scaled, storeColumns } from "./matmulShared.wgsl.ts"

const BLOCKED_BK = 8
const PAD = 4

/** A BM×BN workgroup tile of TM×TN blocks (TM and TN multiples of 4). */
export interface BlockTile {
  readonly bm: number
  readonly bn: number
  readonly tm: number
  readonly tn: number
}

export const blockThreads = (t: BlockTile): number => (t.bm / t.tm) * (t.bn / t.tn)

/** Workgroup bytes of a tile: two slices of X and W, padded rows. */
export const blockStorageBytes = (t: BlockTile): number => 4 * 2 * BLOCKED_BK * (t.bm + PAD + t.bn + PAD)

export const tileName = (t: BlockTile): string => `${t.bm}x${t.bn}-${t.tm}x${t.tn}`

const range = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i)
const COMPONENTS = ["x", "y", "z", "w"]

/** One operand tile (X or W): its chunks per invocation, their place, and the WGSL that loads and stores them. */
interface Operand {
  readonly name: "x" | "w"
  /** tile rows (BM or BN) */
  readonly size: number
  /** chunks per invocation */
  readonly per: number
  /** true when some invocations have fewer chunks than `per` */
  readonly ragged: boolean
}

export const blockedCode = (tile: BlockTile, module: MatmulModule): string => {
  const { width, input } = module
  const { bm, bn, tm, tn } = tile
  const BK = BLOCKED_BK
  const threads = blockThreads(tile)
  const perRow = BK / width
  const t = loadType(width)
  const operand = (name: "x" | "w", size: number): Operand => {
    const chunks = (size * BK) / width
    return { name, size, per: Math.ceil(chunks / threads), ragged: chunks % threads !== 0 }
  }
  const X = operand("x", bm)
  const W = operand("w", bn)
  const chunk = (o: Operand, j: number) => `${o.name}c${j}`
  const inTile = (o: Operand, j: number) => (o.ragged ? `${chunk(o, j)} < ${(o.size * BK) / width}u` : "true")
  const stride = (o: Operand) => (o.size + PAD) / 4
  const place = (o: Operand) => range(o.per).map((j) =>
    `let ${chunk(o, j)} = li + ${j * threads}u;
  let ${o.name}m${j} = ${chunk(o, j)} / ${perRow}u;
  let ${o.name}k${j} = (${chunk(o, j)} % ${perRow}u) * ${width}u;`).join("\n  ")
  const fetch = (slice: string) => range(X.per).map((j) => `{
      let k = ${slice} * ${BK}u + xk${j};
      px${j} = ${t}();
      if (${inTile(X, j)} && row0 + xm${j} < rows && k < params.inDim) {
        let raw = input(row0 + xm${j}, k / ${width}u);
        ${ifNorm(input, `q${j} += squares(raw);`)}
        px${j} = normed(k / ${width}u, raw);
      }
    }`).concat(range(W.per).map((j) => `{
      let k = ${slice} * ${BK}u + wk${j};
      pw${j} = ${t}();
      if (${inTile(W, j)} && col0 + wm${j} < params.outDim && k < params.inDim) { pw${j} = loadW(wRow(col0 + wm${j}) * n + k / ${width}u); }
    }`)).join("\n    ")
  const storeOne = (o: Operand, j: number, buf: string) => {
    const target = o.name === "x" ? "xs" : "ws"
    const reg = `p${o.name}${j}`
    const comps = range(width).map((c) =>
      `{ let at = (${buf} * ${BK}u + ${o.name}k${j} + ${c}u) * ${stride(o) * 4}u + ${o.name}m${j}; ${target}[at / 4u][at % 4u] = ${width === 4 ? `${reg}.${COMPONENTS[c]}` : reg}; }`
    ).join(" ")
    return o.ragged ? `if (${inTile(o, j)}) { ${comps} }` : comps
  }
  const store = (buf: string) => [...range(X.per).map((j) => storeOne(X, j, buf)), ...range(W.per).map((j) => storeOne(W, j, buf))].join("\n    ")
  const accs = range(tm).flatMap((i) => range(tn / 4).map((q) => `c${i}_${q}`))
  const compute = `for (var k = 0u; k < ${BK}u; k++) {
      let xa = (cur * ${BK}u + k) * ${stride(X)}u + ty * ${tm / 4}u;
      let wa = (cur * ${BK}u + k) * ${stride(W)}u + tx * ${tn / 4}u;
      ${range(tm / 4).map((q) => `let a${q} = xs[xa + ${q}u];`).join(" ")}
      ${range(tn / 4).map((q) => `let b${q} = ws[wa + ${q}u];`).join(" ")}
      ${range(tm).flatMap((i) => range(tn / 4).map((q) => `c${i}_${q} += a${Math.floor(i / 4)}.${COMPONENTS[i % 4]} * b${q};`)).join("\n      ")}
    }`
  const norms = ifNorm(input, `// chunk c's sum is row c / ${perRow}'s partial: the ${perRow} partials of a row are contiguous
  ${range(X.per).map((j) => `if (${inTile(X, j)}) { xs[xc${j} / 4u][xc${j} % 4u] = q${j}; }`).join("\n  ")}
  workgroupBarrier();
  ${range(tm).map((i) => `var sum${i} = 0.0;
  for (var p = 0u; p < ${perRow}u; p++) { let at = (ty * ${tm}u + ${i}u) * ${perRow}u + p; sum${i} += xs[at / 4u][at % 4u]; }`).join("\n  ")}`)
  const outputs = range(tm).flatMap((i) => range(tn / 4).map((q) => storeColumns(
    module, `row0 + ty * ${tm}u + ${i}u`, `col0 + tx * ${tn}u + ${4 * q}u`,
    range(4).map((c) => scaled(input, `c${i}_${q}.${COMPONENTS[c]}`, `sum${i}`)), `ty * ${tm}u + ${i}u + row0 < rows`
  ))).join("\n  ")
  return wgsl`${matmulHeader(module)}
var<workgroup> xs: array<vec4f, ${2 * BK * stride(X)}>;
var<workgroup> ws: array<vec4f, ${2 * BK * stride(W)}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let rows = count.x;
  let row0 = wg.y * ${bm}u;
  let col0 = wg.x * ${bn}u;
  let tx = li % ${bn / tn}u;
  let ty = li / ${bn / tn}u;
  let n = loads();
  let slices = (params.inDim + ${BK - 1}u) / ${BK}u;
  // this invocation's chunks of the X and W tiles: the same places in every slice
  ${place(X)}
  ${place(W)}
  ${range(X.per).map((j) => `var px${j}: ${t};`).join(" ")}
  ${range(W.per).map((j) => `var pw${j}: ${t};`).join(" ")}
  ${ifNorm(input, range(X.per).map((j) => `var q${j} = 0.0;`).join(" "))}
  ${accs.map((a) => `var ${a} = vec4f();`).join(" ")}
  {
    let s = 0u;
    ${fetch("s")}
    ${store("0u")}
  }
  workgroupBarrier();
  for (var s = 0u; s < slices; s++) {
    let cur = s & 1u;
    let more = s + 1u < slices;
    if (more) {
    ${fetch("(s + 1u)")}
    }
    ${compute}
    if (more) {
    ${store("(1u - cur)")}
    }
    workgroupBarrier();
  }
  ${norms}
  ${outputs}
}
`
}
