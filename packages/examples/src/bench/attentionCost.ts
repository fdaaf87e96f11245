/**
 * Work that one decoding attention call over a shared-prefix workload must do,
 * for the roofline. K and V take their pools' element size e (4 bytes for
 * f32, 2 for f16); q, out and lse are f32. d = headDim, H = query heads,
 * Hkv = KV heads, B = batch, P = prefix, S = suffix tokens.
 */
import { kvElementBytes, type KvDtype } from "@canopy/kernels"
import type { SweepPoint } from "./attentionWorkload.ts"
import type { BenchShape } from "./benchShape.ts"

const F32 = 4

export interface AttentionWork {
  readonly flops: number
  readonly hydragenBytes: number
  readonly baselineBytes: number
}

export const attentionWork = (shape: BenchShape, point: SweepPoint, kvDtype: KvDtype = "f32"): AttentionWork => {
  const { heads, kvHeads, headDim } = shape
  const { batch, prefix, suffix } = point
  // flops = 4·B·H·d·(P+S): per query head and KV token, q·k is d multiply-adds
  // and p·v another d (2 flops each); softmax and merge are lower order.
  const flops = 4 * batch * heads * headDim * (prefix + suffix)
  // K and V of one token for all KV heads.
  const tokenKv = 2 * kvHeads * headDim * kvElementBytes(kvDtype)
  // Every call reads q and writes out (B·H·d each) and lse (B·H), whatever the method.
  const queryIo = batch * heads * (2 * headDim + 1) * F32
  // hydragen bytes = (P + B·S)·2·Hkv·d·e + io: the prefix KV is read once for
  // all B stacked queries, each suffix once for its own sequence.
  const hydragenBytes = (prefix + batch * suffix) * tokenKv + queryIo
  // baseline bytes = B·(P + S)·2·Hkv·d·e + io: each sequence walks its whole
  // path, so the prefix KV is read once per sequence.
  const baselineBytes = batch * (prefix + suffix) * tokenKv + queryIo
  return { flops, hydragenBytes, baselineBytes }
}
