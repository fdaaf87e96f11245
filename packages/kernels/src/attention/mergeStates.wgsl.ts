/**
 * Merge: for each sequence s and head h, over its partial slots j
 * (slots[indptr[s] .. indptr[s+1])):
 *
 *     m = max_j lse_j,   lse = m + log Σ_j exp(lse_j − m),   o = Σ_j exp(lse_j − lse) · o_j
 *
 * No slot (or only empty ones) gives out = 0 and lse = −∞, written as its bit
 * pattern: WGSL may assume arithmetic never produces infinities.
 */
import { wgsl } from "../gpu/resources.ts"

export const MERGE_WORKGROUP = 64

/** One pipeline serves every shape: heads and head dim come from `params`. */
export const MERGE_STATES_WGSL = wgsl`
struct MergeParams { heads: u32, d4: u32 }
const WG: u32 = ${MERGE_WORKGROUP}u;
const NEG_HALF: f32 = -5e29;
const MINUS_INFINITY: u32 = 0xff800000u;

@group(0) @binding(0) var<storage, read> indptr: array<u32>;
@group(0) @binding(1) var<storage, read> slots: array<u32>;
@group(0) @binding(2) var<storage, read> partialO: array<vec4f>;
@group(0) @binding(3) var<storage, read> partialLse: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> lse: array<u32>;
@group(0) @binding(6) var<uniform> params: MergeParams;

@compute @workgroup_size(${MERGE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let s = wid.x + wid.y * groups.x;
  if (s + 1u >= arrayLength(&indptr)) { return; }
  let heads = params.heads;
  let d4 = params.d4;
  let begin = indptr[s];
  let end = indptr[s + 1u];
  for (var i = tid; i < heads * d4; i += WG) {
    let h = i / d4;
    var m = NEG_HALF;
    for (var j = begin; j < end; j++) { m = max(m, partialLse[slots[j] * heads + h]); }
    var total = 0.0;
    var o = vec4f(0.0);
    if (m > NEG_HALF) {
      for (var j = begin; j < end; j++) {
        let slot = slots[j];
        let w = exp(partialLse[slot * heads + h] - m);
        total += w;
        o += w * partialO[(slot * heads + h) * d4 + i % d4];
      }
    }
    let nonEmpty = total > 0.0;
    out[s * heads * d4 + i] = select(vec4f(0.0), o / total, nonEmpty);
    if (i % d4 == 0u) {
      lse[s * heads + h] = select(MINUS_INFINITY, bitcast<u32>(m + log(total)), nonEmpty);
    }
  }
}
`
