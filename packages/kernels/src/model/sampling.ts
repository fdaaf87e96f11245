/**
 * Sampling, one workgroup per row of logits l (vocabulary V):
 *
 *   temperature T = 0 or top-k = 1:  token = argmax_i l_i (lowest index on ties)
 *   otherwise, in Hugging Face's order (temperature, top-k, top-p):
 *     keep  K = { i : l_i ≥ k-th largest l }                          (ties at the boundary kept)
 *     p_i ∝ exp((l_i − max l) / T) over K
 *     keep  P = { i ∈ K : Σ_{j ∈ K, l_j > l_i} p_j < top_p }           (smallest top set reaching top_p)
 *     token = argmax_{i ∈ P} (l_i − max l) / T + G_i,  G_i = −log(−log u_i)   (Gumbel-max: exact sampling)
 *     u_i = uniform(hash(seed, sequence, step, i))
 *
 * The noise is a counter-based hash of (seed, sequence, step, token), so a row's
 * draw is the same run to run and whatever batch it sits in. Both thresholds are
 * found by a bit-by-bit search over an order-preserving u32 key of the logit:
 * 32 passes that count (top-k) or sum the softmax mass (top-p) of the logits at
 * or above a candidate key. All reductions run in a fixed order.
 *
 * A row with a NaN or infinite logit gets the token NON_FINITE_TOKEN instead
 * (0xffffffff, never a vocabulary id): a broken model must not read as a
 * stream of valid tokens, and the caller turns it into a typed error. The
 * test is on the bits, since WGSL lets a compiler assume floats are finite.
 *
 * The "software" variant (see KernelVariant) gives each row to one invocation
 * and runs the searches serially, with no barrier. It keeps the gpu variant's
 * summation order (W lane sums over i ≡ l mod W, then the same tree), so both
 * variants choose bit-identical tokens for the same reduction width W.
 */
import { sharedComputePipeline } from "../gpu/pipelineCache.ts"
import { wgsl, uniformBuffer } from "../gpu/resources.ts"
import {
  bindAll, BoundRowGroups, defaultVariant, hash4, type KernelVariant, MAX_GRID, packParams, PCG_WGSL,
  rowWorkgroupSize, unitOpen
} from "./common.ts"

export interface SamplingParams {
  /** 0 means greedy */
  readonly temperature: number
  /** 0 (or ≥ vocabulary) means no top-k filter */
  readonly topK: number
  /** 1 means no top-p filter */
  readonly topP: number
  readonly seed: number
  /** identifies the sequence, so rows of one batch draw independent noise */
  readonly sequence: number
  /** the decoding step (or position), so each step of a sequence draws fresh noise */
  readonly step: number
}

/** The token a row with a NaN or infinite logit gets: not a vocabulary id. */
export const NON_FINITE_TOKEN = 0xffffffff
const NON_FINITE = NON_FINITE_TOKEN

/** Words per row in the parameter buffer: temperature f32, topK u32, topP f32, seed, sequence, step, 2 pad. */
export const SAMPLING_PARAM_WORDS = 8

/**
 * The rows' parameters as the kernel reads them, into `into` (kept by a caller
 * that packs every step, so nothing of the batch's size is allocated; its
 * padding words stay as they are) or a new array.
 */
export const packSamplingParams = (
  rows: ReadonlyArray<SamplingParams>,
  into: Uint32Array = new Uint32Array(Math.max(1, rows.length) * SAMPLING_PARAM_WORDS)
): Uint32Array => {
  if (into.length < rows.length * SAMPLING_PARAM_WORDS) {
    throw new RangeError(`packSamplingParams: ${into.length} words hold fewer than ${rows.length} rows of ${SAMPLING_PARAM_WORDS}`)
  }
  const floats = new Float32Array(into.buffer, into.byteOffset, into.length)
  for (let r = 0; r < rows.length; r++) {
    const p = rows[r]!
    const at = r * SAMPLING_PARAM_WORDS
    floats[at] = p.temperature
    into[at + 1] = p.topK
    floats[at + 2] = p.topP
    into[at + 3] = p.seed
    into[at + 4] = p.sequence
    into[at + 5] = p.step
  }
  return into
}

const common = wgsl`
struct Params { vocab: u32 }
struct Row { temperature: f32, topK: u32, topP: f32, seed: u32, sequence: u32, step: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> count: vec4u;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Row>;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;

${PCG_WGSL}

// NaN or ±∞: all exponent bits set.
fn nonFinite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }

// Order-preserving map f32 → u32: a < b ⇔ key(a) < key(b).
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}
`

const code = (wg: number): string => wgsl`${common}
var<workgroup> redValue: array<f32, ${wg}>;
var<workgroup> redIndex: array<u32, ${wg}>;
var<workgroup> sharedValue: f32;
var<workgroup> sharedIndex: u32;

// Argmax of value over the workgroup, lowest index on ties; every thread gets the winner's index.
fn argmaxReduce(li: u32, value: f32, index: u32) -> u32 {
  redValue[li] = value;
  redIndex[li] = index;
  workgroupBarrier();
  for (var s = ${wg}u / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      let ov = redValue[li + s];
      let oi = redIndex[li + s];
      if (ov > redValue[li] || (ov == redValue[li] && oi < redIndex[li])) {
        redValue[li] = ov;
        redIndex[li] = oi;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) { sharedIndex = redIndex[0]; }
  return workgroupUniformLoad(&sharedIndex);
}

fn sumReduce(li: u32, value: f32) -> f32 {
  redValue[li] = value;
  workgroupBarrier();
  for (var s = ${wg}u / 2u; s > 0u; s >>= 1u) {
    if (li < s) { redValue[li] += redValue[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u) { sharedValue = redValue[0]; }
  return workgroupUniformLoad(&sharedValue);
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.y * ${MAX_GRID}u + wid.x;
  if (r >= count.x) { return; }
  let row = rows[r];
  let vocab = params.vocab;
  let base = r * vocab;

  var bestValue = -3.4028234663852886e38;
  var bestIndex = 0xffffffffu;
  var bad = 0.0;
  for (var i = li; i < vocab; i += ${wg}u) {
    let v = logits[base + i];
    if (nonFinite(v)) { bad = 1.0; }
    if (v > bestValue || bestIndex == 0xffffffffu) { bestValue = v; bestIndex = i; }
  }
  if (sumReduce(li, bad) > 0.0) {
    if (li == 0u) { tokens[r] = ${NON_FINITE}u; }
    return;
  }
  let top = argmaxReduce(li, bestValue, bestIndex);
  if (row.temperature <= 0.0 || row.topK == 1u) {
    if (li == 0u) { tokens[r] = top; }
    return;
  }
  let maxLogit = logits[base + top];
  let invT = 1.0 / row.temperature;

  // Top-k: the largest key t with #{l ≥ t} ≥ k.
  var low = 0u;
  if (row.topK != 0u && row.topK < vocab) {
    for (var bit = 31i; bit >= 0i; bit--) {
      let candidate = low | (1u << u32(bit));
      var n = 0.0;
      for (var i = li; i < vocab; i += ${wg}u) {
        if (key(logits[base + i]) >= candidate) { n += 1.0; }
      }
      if (sumReduce(li, n) >= f32(row.topK)) { low = candidate; }
    }
  }

  // Top-p: the largest key t ≥ low whose mass of l ≥ t reaches top_p of the top-k mass.
  if (row.topP < 1.0) {
    var total = 0.0;
    for (var i = li; i < vocab; i += ${wg}u) {
      let v = logits[base + i];
      if (key(v) >= low) { total += exp((v - maxLogit) * invT); }
    }
    let goal = sumReduce(li, total) * row.topP;
    var t = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
      let candidate = t | (1u << u32(bit));
      let atLeast = max(candidate, low);
      var mass = 0.0;
      for (var i = li; i < vocab; i += ${wg}u) {
        let v = logits[base + i];
        if (key(v) >= atLeast) { mass += exp((v - maxLogit) * invT); }
      }
      if (sumReduce(li, mass) >= goal) { t = candidate; }
    }
    low = max(low, t);
  }

  var pickValue = -3.4028234663852886e38;
  var pickIndex = 0xffffffffu;
  for (var i = li; i < vocab; i += ${wg}u) {
    let v = logits[base + i];
    if (key(v) >= low) {
      let u = unitOpen(hash4(row.seed, row.sequence, row.step, i));
      let g = (v - maxLogit) * invT - log(-log(u));
      if (g > pickValue || pickIndex == 0xffffffffu) { pickValue = g; pickIndex = i; }
    }
  }
  let chosen = argmaxReduce(li, pickValue, pickIndex);
  if (li == 0u) { tokens[r] = chosen; }
}
`

/** Rows per workgroup of the software variant. */
const SOFTWARE_WG = 4

const softwareCode = (wg: number): string => wgsl`${common}
var<private> lanes: array<f32, ${wg}>;

// The gpu variant's tree sum over its ${wg} lanes, in the same order.
fn laneSum() -> f32 {
  for (var s = ${wg}u / 2u; s > 0u; s >>= 1u) {
    for (var l = 0u; l < s; l++) { lanes[l] += lanes[l + s]; }
  }
  return lanes[0];
}

// Lane i mod ${wg} accumulates the softmax mass of the logits with key ≥ atLeast, in increasing i.
fn laneMass(base: u32, atLeast: u32, maxLogit: f32, invT: f32) -> f32 {
  for (var l = 0u; l < ${wg}u; l++) { lanes[l] = 0.0; }
  for (var i = 0u; i < params.vocab; i++) {
    let v = logits[base + i];
    if (key(v) >= atLeast) { lanes[i % ${wg}u] += exp((v - maxLogit) * invT); }
  }
  return laneSum();
}

@compute @workgroup_size(${SOFTWARE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = (wid.y * ${MAX_GRID}u + wid.x) * ${SOFTWARE_WG}u + li;
  if (r >= count.x) { return; }
  let row = rows[r];
  let vocab = params.vocab;
  let base = r * vocab;

  // Strict > in increasing i: the lowest index among the maxima.
  var top = 0u;
  var bad = nonFinite(logits[base]);
  for (var i = 1u; i < vocab; i++) {
    if (nonFinite(logits[base + i])) { bad = true; }
    if (logits[base + i] > logits[base + top]) { top = i; }
  }
  if (bad) {
    tokens[r] = ${NON_FINITE}u;
    return;
  }
  if (row.temperature <= 0.0 || row.topK == 1u) {
    tokens[r] = top;
    return;
  }
  let maxLogit = logits[base + top];
  let invT = 1.0 / row.temperature;

  // Top-k: counts are exact, so their order does not matter.
  var low = 0u;
  if (row.topK != 0u && row.topK < vocab) {
    for (var bit = 31i; bit >= 0i; bit--) {
      let candidate = low | (1u << u32(bit));
      var n = 0u;
      for (var i = 0u; i < vocab; i++) {
        if (key(logits[base + i]) >= candidate) { n++; }
      }
      if (n >= row.topK) { low = candidate; }
    }
  }

  if (row.topP < 1.0) {
    let goal = laneMass(base, low, maxLogit, invT) * row.topP;
    var t = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
      let candidate = t | (1u << u32(bit));
      if (laneMass(base, max(candidate, low), maxLogit, invT) >= goal) { t = candidate; }
    }
    low = max(low, t);
  }

  var pickValue = -3.4028234663852886e38;
  var pickIndex = 0xffffffffu;
  for (var i = 0u; i < vocab; i++) {
    let v = logits[base + i];
    if (key(v) >= low) {
      let u = unitOpen(hash4(row.seed, row.sequence, row.step, i));
      let g = (v - maxLogit) * invT - log(-log(u));
      if (g > pickValue || pickIndex == 0xffffffffu) { pickValue = g; pickIndex = i; }
    }
  }
  tokens[r] = pickIndex;
}
`

export interface SamplingBinding {
  /** f32 [rows][vocab] */
  readonly logits: GPUBuffer
  /** packSamplingParams layout, [rows][8] words */
  readonly params: GPUBuffer
  /** u32 [rows] */
  readonly tokens: GPUBuffer
  readonly count: GPUBuffer
  readonly vocab: number
}

export class SamplingKernel {
  private constructor(readonly device: GPUDevice, readonly variant: KernelVariant, readonly pipeline: GPUComputePipeline) {}

  /**
   * `workgroupSize` (a power of two) is the width W of the row reductions: the
   * gpu variant's threads per row, whose summation order the software variant
   * reproduces. It defaults to the device's row size (256 where allowed); small
   * vocabularies run faster on the gpu variant with fewer threads per row.
   */
  static async create(
    device: GPUDevice,
    workgroupSize = rowWorkgroupSize(device),
    variant: KernelVariant = defaultVariant(device)
  ): Promise<SamplingKernel> {
    const pipeline = variant === "software"
      ? await sharedComputePipeline(device, "sampling-software", softwareCode(workgroupSize))
      : await sharedComputePipeline(device, "sampling", code(workgroupSize))
    return new SamplingKernel(device, variant, pipeline)
  }

  bind(b: SamplingBinding): BoundSampling {
    const params = uniformBuffer(this.device, "sampling-params", packParams([["u32", b.vocab]]))
    const bindGroup = bindAll(this.device, this.pipeline, "sampling", [params, b.count, b.logits, b.params, b.tokens])
    return new BoundRowGroups({ pipeline: this.pipeline, bindGroup }, params, this.variant === "software" ? SOFTWARE_WG : 1)
  }
}

/** Sampling bound to its buffers: one dispatch over groups of rows. */
export type BoundSampling = BoundRowGroups

/** The set of token ids that survive temperature, top-k and top-p, and their probabilities (float64). */
export const referenceSamplingDistribution = (logits: ArrayLike<number>, p: SamplingParams): Float64Array => {
  const vocab = logits.length
  const probs = new Float64Array(vocab)
  const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b)
  const first = order[0]!
  if (p.temperature <= 0 || p.topK === 1) {
    probs[first] = 1
    return probs
  }
  const max = logits[first]!
  const kthValue = p.topK > 0 && p.topK < vocab ? logits[order[p.topK - 1]!]! : -Infinity
  const kept = order.filter((i) => logits[i]! >= kthValue)
  const weight = (i: number): number => Math.exp((logits[i]! - max) / p.temperature)
  const total = kept.reduce((s, i) => s + weight(i), 0)
  const survivors = p.topP < 1
    ? kept.filter((i) => kept.reduce((s, j) => (logits[j]! > logits[i]! ? s + weight(j) : s), 0) < p.topP * total)
    : kept
  const mass = survivors.reduce((s, i) => s + weight(i), 0)
  for (const i of survivors) probs[i] = weight(i) / mass
  return probs
}

/** The token the GPU draws, computed in float64 with the same noise (it may differ on near-ties only). */
export const referenceSample = (logits: ArrayLike<number>, p: SamplingParams): number => {
  const probs = referenceSamplingDistribution(logits, p)
  if (p.temperature <= 0 || p.topK === 1) return probs.indexOf(1)
  let best = -Infinity
  let pick = -1
  for (let i = 0; i < logits.length; i++) {
    if (probs[i] === 0) continue
    const g = logits[i]! / p.temperature - Math.log(-Math.log(unitOpen(hash4(p.seed, p.sequence, p.step, i))))
    if (g > best) {
      best = g
      pick = i
    }
  }
  return pick
}
