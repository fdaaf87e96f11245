/**
 * Random attention cases for the tests: a tree of nodes with KV, sequences
 * sitting on nodes (inner ones too), laid out as the engine does — each node's
 * tokens in its own blocks of a shuffled pool, token t of a node at slot
 * (ancestors' tokens + t) mod blockSize — plus the LevelPlan over them and the
 * same case in the oracle's tree form.
 */
import fc from "fast-check"
import { type LevelPlan, type LevelPlanLevel, mulberry32 } from "@canopy/tree-cache"
import { roundKv, type KvDtype } from "../src/attention/kvStorage.ts"
import type { PooledInputs, TreeAttentionCase } from "../src/attention/reference.ts"
import type { TreeAttentionOptions } from "../src/attention/treeAttention.ts"
import { chooseDecodeTile, chooseLevelTile, flash2Lanes, type LevelTile, type LevelVariant, levelVariantOf } from "../src/attention/tiling.ts"

/** The shrinkable description of a case; the float data derive from `seed`. */
export interface CaseSpec {
  readonly kvHeads: number
  readonly group: number
  readonly headDim: number
  readonly blockSize: number
  /** parent index (smaller) or null for a root */
  readonly parents: ReadonlyArray<number | null>
  readonly lengths: ReadonlyArray<number>
  /** per sequence: its node and an optional kv limit on that node (causal prefill) */
  readonly queries: ReadonlyArray<{ readonly node: number; readonly kvLimit?: number }>
  /** largest |score| of each query row over its path (lower for a row whose largest score is a near-cancellation: see buildCase) */
  readonly scoreMagnitude: number
  readonly seed: number
}

export interface BuiltCase {
  readonly spec: CaseSpec
  readonly plan: LevelPlan
  readonly inputs: PooledInputs
  readonly tree: TreeAttentionCase
}


const shuffle = <A>(xs: Array<A>, random: () => number): Array<A> => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
  }
  return xs
}

export const pathOf = (parents: ReadonlyArray<number | null>, node: number): Array<number> => {
  const path: Array<number> = []
  for (let n: number | null = node; n !== null; n = parents[n]!) path.unshift(n)
  return path
}

/** The most a row's largest score may be outweighed by the magnitudes of its terms (see the queries in buildCase). */
const CONDITION = 32

export const buildCase = (spec: CaseSpec): BuiltCase => {
  const { kvHeads, headDim: d, blockSize: bs, parents, lengths } = spec
  const heads = kvHeads * spec.group
  const random = mulberry32(spec.seed)
  const uniform = () => random() * 2 - 1
  const nodeCount = parents.length

  // tokens before each node on its path → its start slot and blocks
  const before = parents.map(() => 0)
  for (let n = 0; n < nodeCount; n++) {
    const p = parents[n]!
    before[n] = p === null ? 0 : before[p]! + lengths[p]!
  }
  const startSlot = before.map((b) => b % bs)
  const blockCount = lengths.map((len, n) => (len === 0 ? 0 : Math.ceil((startSlot[n]! + len) / bs)))
  const totalBlocks = blockCount.reduce((a, b) => a + b, 0)
  const poolBlocks = totalBlocks + 3
  const ids = shuffle(Array.from({ length: poolBlocks }, (_, i) => i), random)
  const tables: Array<Array<number>> = []
  let next = 0
  for (let n = 0; n < nodeCount; n++) tables.push(ids.slice(next, (next += blockCount[n]!)))

  // unused slots hold large values: reading one by mistake shows in the results
  const poolSize = poolBlocks * bs * kvHeads * d
  const kPool = Float32Array.from({ length: poolSize }, () => 50 * uniform())
  const vPool = Float32Array.from({ length: poolSize }, () => 50 * uniform())
  const nodes = lengths.map((len, n) => {
    const k = new Float32Array(len * kvHeads * d)
    const v = new Float32Array(len * kvHeads * d)
    for (let t = 0; t < len; t++) {
      const p = startSlot[n]! + t
      const block = tables[n]![Math.floor(p / bs)]!
      for (let h = 0; h < kvHeads; h++) {
        for (let c = 0; c < d; c++) {
          const kv = uniform()
          const vv = uniform()
          k[(t * kvHeads + h) * d + c] = kv
          v[(t * kvHeads + h) * d + c] = vv
          kPool[((block * bs + (p % bs)) * kvHeads + h) * d + c] = kv
          vPool[((block * bs + (p % bs)) * kvHeads + h) * d + c] = vv
        }
      }
    }
    return { parent: parents[n]!, length: len, k, v }
  })

  // queries scaled so each row's largest |score| over its visible path is scoreMagnitude — unless that score is
  // a near-cancellation (its terms' magnitudes over CONDITION times it: a row nearly orthogonal to a path of one
  // or two keys), where scaling it up would make every score ill-conditioned, beyond what f32 arithmetic can
  // match to the tolerances; such a row is scaled by its terms instead, its largest |score| below scoreMagnitude
  const scale = 1 / Math.sqrt(d)
  const q = new Float32Array(spec.queries.length * heads * d)
  spec.queries.forEach((query, s) => {
    const path = pathOf(parents, query.node)
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / spec.group)
      const row = Array.from({ length: d }, uniform)
      let max = 0
      let terms = 0
      for (const n of path) {
        const visible = n === query.node ? Math.min(lengths[n]!, query.kvLimit ?? Infinity) : lengths[n]!
        for (let t = 0; t < visible; t++) {
          let dot = 0
          let magnitude = 0
          for (let c = 0; c < d; c++) {
            const term = row[c]! * nodes[n]!.k[(t * kvHeads + kvh) * d + c]!
            dot += term
            magnitude += Math.abs(term)
          }
          max = Math.max(max, Math.abs(scale * dot))
          terms = Math.max(terms, scale * magnitude)
        }
      }
      const bound = Math.max(max, terms / CONDITION)
      const factor = bound > 0 ? spec.scoreMagnitude / bound : 1
      for (let c = 0; c < d; c++) q[(s * heads + h) * d + c] = row[c]! * factor
    }
  })

  const tree: TreeAttentionCase = {
    heads,
    kvHeads,
    headDim: d,
    nodes,
    queries: spec.queries.map((query, s) => ({
      node: query.node,
      q: q.subarray(s * heads * d, (s + 1) * heads * d),
      ...(query.kvLimit === undefined ? {} : { kvLimit: query.kvLimit })
    }))
  }
  return { spec, plan: planCase(spec, startSlot, tables, random), inputs: { q, kPool, vPool }, tree }
}

/** The LevelPlan of a case: levels by depth, nodes in shuffled order, entries by sequence. */
const planCase = (
  spec: CaseSpec,
  startSlot: ReadonlyArray<number>,
  tables: ReadonlyArray<ReadonlyArray<number>>,
  random: () => number
): LevelPlan => {
  const { parents, lengths, queries } = spec
  const paths = queries.map((query) => pathOf(parents, query.node))
  const depth = Math.max(0, ...paths.map((p) => p.length))
  const anyLimit = queries.some((query) => query.kvLimit !== undefined)
  const levels: Array<LevelPlanLevel> = []
  const slotOf = new Map<string, number>()
  let queryOffset = 0
  for (let l = 0; l < depth; l++) {
    const nodes = shuffle([...new Set(paths.flatMap((p) => (p.length > l ? [p[l]!] : [])))], random)
    const blockIndptr = [0]
    const blockIndices: Array<number> = []
    const queryIndptr = [0]
    const queryIndices: Array<number> = []
    const limits: Array<number> = []
    for (const n of nodes) {
      blockIndices.push(...tables[n]!)
      blockIndptr.push(blockIndices.length)
      paths.forEach((p, s) => {
        if (p[l] !== n) return
        slotOf.set(`${s}:${l}`, queryOffset + queryIndices.length)
        queryIndices.push(s)
        const own = queries[s]!.node === n ? queries[s]!.kvLimit : undefined
        // ancestors: sometimes the node length, sometimes more than it
        limits.push(own ?? (random() < 0.5 ? lengths[n]! : 0xffffffff))
      })
      queryIndptr.push(queryIndices.length)
    }
    levels.push({
      depth: l,
      nodeIds: Int32Array.from(nodes),
      length: Uint32Array.from(nodes, (n) => lengths[n]!),
      startSlot: Uint32Array.from(nodes, (n) => startSlot[n]!),
      blockIndptr: Uint32Array.from(blockIndptr),
      blockIndices: Uint32Array.from(blockIndices),
      queryIndptr: Uint32Array.from(queryIndptr),
      queryIndices: Uint32Array.from(queryIndices),
      ...(anyLimit ? { queryKvLimit: Uint32Array.from(limits) } : {}),
      queryOffset
    })
    queryOffset += queryIndices.length
  }
  const seqPartialIndptr = [0]
  const seqPartials: Array<number> = []
  const pathIndptr = [0]
  const pathNodes: Array<number> = []
  paths.forEach((p, s) => {
    p.forEach((_, l) => seqPartials.push(slotOf.get(`${s}:${l}`)!))
    seqPartialIndptr.push(seqPartials.length)
    pathNodes.push(...p)
    pathIndptr.push(pathNodes.length)
  })
  return {
    blockSize: spec.blockSize,
    numSequences: queries.length,
    levels,
    numPartials: queryOffset,
    seqPartialIndptr: Uint32Array.from(seqPartialIndptr),
    seqPartials: Uint32Array.from(seqPartials),
    pathIndptr: Uint32Array.from(pathIndptr),
    pathNodes: Int32Array.from(pathNodes),
    seqLength: Uint32Array.from(queries, (query, s) =>
      paths[s]!.reduce((sum, n) => sum + (n === query.node ? Math.min(lengths[n]!, query.kvLimit ?? Infinity) : lengths[n]!), 0)
    )
  }
}

export interface CaseBounds {
  readonly maxDepth: number
  readonly maxFanOut: number
  readonly maxNodes: number
  readonly maxLength: number
  readonly maxSequences: number
  /** bound on Σ over sequences of visible path tokens × heads × headDim */
  readonly maxWork: number
  readonly causal: boolean
  /** head dims to draw from (each new one costs a pipeline compile) */
  readonly headDims: ReadonlyArray<number>
  /** query heads per KV head to draw from (default 1, 2, 4, 8; each costs a decode-kernel compile) */
  readonly groups?: ReadonlyArray<number>
}

/**
 * A palette of head dims for the random GPU properties keeps pipeline compiles
 * (seconds each on a software adapter) bounded; it covers decode lane splits
 * of 2, 5, 7 and 8 and level tiles of 128 and 64 rows (flash2, the default;
 * 64 and 32 stacked). The edge tests run the head dims that reach the other
 * tilings (headDimsBeyondPalette).
 */
export const HEAD_DIM_PALETTE: ReadonlyArray<number> = [8, 40, 56, 88, 128]

/** every head dim the kernels support */
export const HEAD_DIMS: ReadonlyArray<number> = Array.from({ length: 16 }, (_, i) => 8 * (i + 1))

/** What a level tile compiles in at head dim d beyond its rows × keys: a guarded tail (stacked accumulators, flash2 slices) or not. */
const levelTileFeature = (tile: LevelTile, d: number): string =>
  levelVariantOf(tile) === "flash2"
    ? `flash2 level tile ${tile.rows}x${tile.keys}, slices ${(d / 4) % flash2Lanes(tile) === 0 ? "even" : "uneven"}`
    : `level tile ${tile.rows}x${tile.keys}, accumulators ${((tile.rows * d) / 4) % tile.workgroupSize === 0 ? "even" : "uneven"}`

/**
 * The head dims that, with the palette, reach every tiling the kernels choose
 * on this device, with the level tiles of `variant` (default: the attention's
 * own, tiling.ts DEFAULT_LEVEL_VARIANT). The attention WGSL has no branch on
 * the head dim: it only compiles sizes in as constants, so what a head dim can
 * add is a new
 * combination of them. Those that change which code runs: each level tile
 * (rows × keys) with its work splitting evenly or not (a guarded tail, whose
 * bound depends on the tile: stacked accumulators over the workgroup, flash2
 * head-dim slices over a row's lanes), each decode lane split
 * (how a key row is interleaved over threads, and whether key slots leave
 * threads idle), and lanes holding one vec4 or several (an inner loop of one
 * or more). Any other head dim repeats a combination already run and adds a
 * compile (seconds on the software adapter) and no path. Picked greedily,
 * most new combinations first, then the smaller head dim; on SwiftShader
 * (32 KiB of workgroup memory) that is, with flash2 tiles, 16 (4 decode
 * lanes), 24 (6 lanes) and 64 (128×32 tile); with stacked ones 16, 96 (32×16
 * tile), 104 (32×16, uneven accumulators) and 120 (32×8, uneven; 6 lanes of
 * 5 vec4s).
 */
export const headDimsBeyondPalette = (
  limits: GPUSupportedLimits, palette: ReadonlyArray<number> = HEAD_DIM_PALETTE, variant?: LevelVariant
): Array<number> => {
  const features = (d: number): Array<string> => {
    const level = chooseLevelTile(d, limits, variant)
    const decode = chooseDecodeTile(d, 1, limits)
    return [
      levelTileFeature(level, d),
      `decode lanes ${decode.lanes}`,
      `vec4s per lane ${d / 4 / decode.lanes === 1 ? "one" : "several"}`
    ]
  }
  const covered = new Set(palette.flatMap(features))
  const chosen: Array<number> = []
  for (;;) {
    let best: { readonly d: number; readonly fresh: number } | undefined
    for (const d of HEAD_DIMS) {
      if (palette.includes(d) || chosen.includes(d)) continue
      const fresh = features(d).filter((f) => !covered.has(f)).length
      if (fresh > 0 && (best === undefined || fresh > best.fresh)) best = { d, fresh }
    }
    if (best === undefined) return chosen.sort((a, b) => a - b)
    chosen.push(best.d)
    for (const f of features(best.d)) covered.add(f)
  }
}

/**
 * Trees of depth ≤ maxDepth and fan-out ≤ maxFanOut: node i picks its parent
 * among the earlier nodes that still have room (or becomes a root).
 */
export const arbitraryCase = (bounds: CaseBounds): fc.Arbitrary<CaseSpec> =>
  fc
    .record({
      kvHeads: fc.integer({ min: 1, max: 2 }),
      group: fc.constantFrom(...(bounds.groups ?? [1, 2, 4, 8])),
      headDim: fc.constantFrom(...bounds.headDims),
      blockSize: fc.oneof(fc.constantFrom(1, 16, 32), fc.integer({ min: 1, max: 32 })),
      nodes: fc.array(
        fc.record({
          parentPick: fc.option(fc.nat(), { freq: 6 }),
          length: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: bounds.maxLength }))
        }),
        { minLength: 1, maxLength: bounds.maxNodes }
      ),
      queries: fc.array(
        fc.record({ nodePick: fc.nat(), limitPick: bounds.causal ? fc.option(fc.nat(), { freq: 2 }) : fc.constant(null) }),
        { minLength: 1, maxLength: bounds.maxSequences }
      ),
      scoreMagnitude: fc.oneof(fc.constant(1), fc.double({ min: 0.1, max: 30, noNaN: true })),
      seed: fc.nat()
    })
    .map((r): CaseSpec => {
      const parents: Array<number | null> = []
      const depthOf: Array<number> = []
      const children: Array<number> = []
      r.nodes.forEach((node, i) => {
        const open = parents.flatMap((_, j) => (depthOf[j]! < bounds.maxDepth - 1 && children[j]! < bounds.maxFanOut ? [j] : []))
        const parent = i === 0 || node.parentPick === null || open.length === 0 ? null : open[node.parentPick % open.length]!
        parents.push(parent)
        depthOf.push(parent === null ? 0 : depthOf[parent]! + 1)
        children.push(0)
        if (parent !== null) children[parent]! += 1
      })
      const lengths = r.nodes.map((n) => n.length)
      const queries = r.queries.map((q) => {
        const node = q.nodePick % parents.length
        return q.limitPick === null ? { node } : { node, kvLimit: q.limitPick % (lengths[node]! + 1) }
      })
      return { kvHeads: r.kvHeads, group: r.group, headDim: r.headDim, blockSize: r.blockSize, parents, lengths, queries, scoreMagnitude: r.scoreMagnitude, seed: r.seed }
    })
    .filter((spec) => caseWork(spec) <= bounds.maxWork)

/** Σ over sequences of visible path tokens × heads × headDim (what the baseline reads) */
export const caseWork = (spec: CaseSpec): number =>
  spec.queries.reduce((sum, query) => {
    const tokens = pathOf(spec.parents, query.node).reduce(
      (t, n) => t + (n === query.node ? Math.min(spec.lengths[n]!, query.kvLimit ?? Infinity) : spec.lengths[n]!),
      0
    )
    return sum + tokens * spec.kvHeads * spec.group * spec.headDim
  }, 0)

/** Relative error of one output vector: max |gpu − ref| / max(1e-6, max |ref|). */
export const rowError = (gpu: ArrayLike<number>, ref: ArrayLike<number>, begin: number, end: number): number => {
  let diff = 0
  let size = 0
  for (let i = begin; i < end; i++) {
    diff = Math.max(diff, Math.abs(gpu[i]! - ref[i]!))
    size = Math.max(size, Math.abs(ref[i]!))
  }
  return diff / Math.max(1e-6, size)
}

export interface Mismatch {
  readonly row: number
  readonly head: number
  readonly what: string
}

/**
 * Compares GPU outputs with the float64 reference. Every element must have
 * been written (no NaN left from the poison), each (row, head) output vector
 * within `tolerance` relative error, and lse within tolerance·max(1, |lse|).
 */
export const compareOutputs = (
  gpu: { readonly out: ArrayLike<number>; readonly lse: ArrayLike<number> },
  ref: { readonly out: ArrayLike<number>; readonly lse: ArrayLike<number> },
  heads: number,
  headDim: number,
  tolerance: number
): Array<Mismatch> => {
  const problems: Array<Mismatch> = []
  const rows = ref.lse.length / heads
  for (let row = 0; row < rows; row++) {
    for (let h = 0; h < heads; h++) {
      const at = row * heads + h
      const begin = at * headDim
      const end = begin + headDim
      for (let i = begin; i < end; i++) {
        if (Number.isNaN(gpu.out[i])) {
          problems.push({ row, head: h, what: `out[${i - begin}] not written (NaN)` })
          break
        }
      }
      const err = rowError(gpu.out, ref.out, begin, end)
      if (!(err <= tolerance)) problems.push({ row, head: h, what: `out relative error ${err.toExponential(3)}` })
      const g = gpu.lse[at]!
      const r = ref.lse[at]!
      const lseOk = r === -Infinity ? g === -Infinity : Math.abs(g - r) <= tolerance * Math.max(1, Math.abs(r))
      if (!lseOk) problems.push({ row, head: h, what: `lse ${g} vs reference ${r}` })
    }
  }
  return problems
}

export const describeMismatches = (problems: ReadonlyArray<Mismatch>): string =>
  `${problems.length} mismatching (row, head) pairs, first: ` +
  problems
    .slice(0, 5)
    .map((p) => `row ${p.row} head ${p.head}: ${p.what}`)
    .join("; ")

/**
 * The case with every K and V value (the nodes' and the pools') rounded to
 * what a pool of `dtype` holds: the reference then attends exactly the values
 * the kernels read, so only the arithmetic is left to differ.
 */
export const roundCaseKv = (built: BuiltCase, dtype: KvDtype): BuiltCase =>
  dtype === "f32"
    ? built
    : {
        ...built,
        inputs: { ...built.inputs, kPool: roundKv(built.inputs.kPool, dtype), vPool: roundKv(built.inputs.vPool, dtype) },
        tree: { ...built.tree, nodes: built.tree.nodes.map((n) => ({ ...n, k: roundKv(n.k, dtype), v: roundKv(n.v, dtype) })) }
      }

/** A case's attention options: its shape, with small chunks and targets (the cases' trees are small, chunking must still happen), and `extra`. */
export const caseAttentionOptions = (spec: CaseSpec, extra: Partial<TreeAttentionOptions> = {}): TreeAttentionOptions => ({
  heads: spec.kvHeads * spec.group,
  kvHeads: spec.kvHeads,
  headDim: spec.headDim,
  blockSize: spec.blockSize,
  minChunkTokens: 32,
  targetWorkgroups: 64,
  ...extra
})
