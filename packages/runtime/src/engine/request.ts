/**
 * What the engine takes and gives: requests (a prompt tree and its sampling),
 * completions, events, statistics and the engine's options.
 */
import type { KvDtype, LevelTile, MatmulChoice, TuneOptions } from "@canopy/kernels"
import type { PromptTree } from "./PromptTree.ts"

/**
 * hydragen: shared nodes attended once per level; baseline: per-sequence paged
 * decoding; none: attention skipped — meaningless text, only the ceiling a
 * decode step could reach with free attention (benchmarks).
 */
export type AttentionMode = "hydragen" | "baseline" | "none"
export type SharingMode = "tree" | "single-level"

export interface SamplingOptions {
  /** 0 = greedy */
  readonly temperature: number
  /** 0 = no top-k filter */
  readonly topK: number
  /** 1 = no top-p filter */
  readonly topP: number
  readonly seed: number
  readonly maxTokens: number
  /** generation stops before the first occurrence of any of these */
  readonly stop: ReadonlyArray<string>
  /** generation stops at these token ids (the model's end-of-sequence ids are added) */
  readonly stopTokenIds: ReadonlyArray<number>
  /** keep going past end-of-sequence tokens (fixed-length runs for benchmarks) */
  readonly ignoreEos: boolean
}

export const DEFAULT_SAMPLING: SamplingOptions = {
  temperature: 0.8,
  topK: 0,
  topP: 1,
  seed: 0,
  maxTokens: 128,
  stop: [],
  stopTokenIds: [],
  ignoreEos: false
}

/**
 * continuous: samples join the running batch whenever slots and KV blocks
 * free up, alongside every other request's; waves: this request's samples run
 * in waves, the next starting only when the whole wave has ended (kept to
 * compare against).
 */
export type SchedulingMode = "continuous" | "waves"

export interface GenerateRequest {
  readonly tree: PromptTree
  /** the request's sampling; a node's own `sampling` overrides it for the samples at and below that node */
  readonly sampling?: Partial<SamplingOptions>
  readonly attention?: AttentionMode
  readonly sharing?: SharingMode
  readonly scheduling?: SchedulingMode
}

export type FinishReason = "stop" | "eos" | "length"

export interface Completion {
  /** child indices from the root to the node that asked for samples */
  readonly path: ReadonlyArray<number>
  readonly sample: number
  readonly tokens: ReadonlyArray<number>
  readonly text: string
  readonly finishReason: FinishReason
}

export interface StepProgress {
  readonly wave: number
  readonly waves: number
  readonly step: number
  /** samples decoding in this step */
  readonly live: number
  readonly finishedSamples: number
  readonly totalSamples: number
  readonly generatedTokens: number
  readonly elapsedSeconds: number
}

export interface GenerateStats {
  readonly samples: number
  readonly generatedTokens: number
  /** prompt tokens summed over samples: what a runtime without sharing would hold */
  readonly promptTokens: number
  /** prompt tokens actually prefilled (each tree node once) */
  readonly prefillTokens: number
  /** prompt tokens found already cached: from earlier requests, or prefilled by an earlier leaf of this one */
  readonly reusedTokens: number
  readonly prefillSeconds: number
  readonly decodeSeconds: number
  readonly totalSeconds: number
  /** generated tokens per second of decoding */
  readonly decodeTokensPerSecond: number
  /** generated tokens per second overall (prefill included) */
  readonly tokensPerSecond: number
  readonly steps: number
  readonly waves: number
  /** mean rows of this request's decode steps (all requests' rows counted) */
  readonly meanBatch: number
  /**
   * share of the decode batch's places left empty while this request decoded:
   * 1 − (rows decoded) / (steps × the most rows a step could hold: maxBatch, or
   * what the request alone could fill). High when short samples leave a wave's
   * places idle until its longest sample ends.
   */
  readonly idleShare: number
  /** samples preempted (their blocks freed, recomputed later) because KV blocks ran out */
  readonly preemptions: number
  readonly peakBlocks: number
  readonly blockCapacity: number
  readonly blockSize: number
  /** mean over decode steps of (KV tokens attended by all samples) / (distinct KV tokens attended) */
  readonly sharingFactor: number
  readonly attention: AttentionMode
  readonly sharing: SharingMode
}

export interface GenerateResult {
  readonly completions: ReadonlyArray<Completion>
  readonly stats: GenerateStats
}

export interface TokenEvent {
  readonly path: ReadonlyArray<number>
  readonly sample: number
  readonly token: number
  readonly text: string
}

/** One decode step's logits for a request's rows. */
export interface LogitsEvent {
  readonly rows: ReadonlyArray<{ readonly path: ReadonlyArray<number>; readonly sample: number; readonly position: number }>
  readonly logits: Float32Array
}

export interface GenerateEvents {
  readonly onStep?: (progress: StepProgress) => void
  /** each generated token as it is sampled, with the text it adds (see TokenText: "" while a UTF-8 character is incomplete) */
  readonly onToken?: (event: TokenEvent) => void
  readonly onCompletion?: (completion: Completion) => void
  /**
   * The logits each decode step sampled from, `[rows][vocab]` with row r the
   * sample `rows[r]`. Reading them back costs a copy per step: set it only to inspect.
   */
  readonly onLogits?: (event: LogitsEvent) => void
}

export interface EngineOptions {
  /** tokens per KV block (default 16) */
  readonly blockSize?: number
  /** KV blocks per pool; default: what kvMemoryBytes allows */
  readonly kvBlocks?: number
  /** bytes for all KV pools when kvBlocks is not given (default 4 GiB on a GPU, 256 MiB on a software adapter) */
  readonly kvMemoryBytes?: number
  /** shards per KV pool; default: the fewest that keep each within one storage binding */
  readonly kvShards?: number
  /**
   * Element type of the KV cache (default "f16": DEFAULT_KV_DTYPE in KvCache.ts).
   * "f16" stores half the bytes per token, rounding K/V to f16 as they are
   * written; attention computes in f32. "f32" stays for checking against it.
   */
  readonly kvDtype?: KvDtype
  /** most samples decoding at once (default 1024; more wait for places to free up) */
  readonly maxBatch?: number
  /**
   * most prompt tokens per prefill forward (default 256): the prefill chunk.
   * New prompts are prefilled one chunk per step between decode steps, so a
   * long prompt delays each running sample's next token by one chunk's
   * forward, never by the whole prompt.
   */
  readonly maxPrefillRows?: number
  /**
   * Submitting each decode step before the previous one is read back (default
   * true): the GPU runs a step while the CPU plans and encodes the next, and
   * sampled ids reach the next step on the GPU. The tokens are the same either
   * way; a sample that ends is learnt one step late (its extra row is dropped).
   */
  readonly overlap?: boolean
  /**
   * Tuning the kernels to the device (default true): the level-attention
   * tile and the matmul kernel of each row regime, measured once per adapter,
   * Canopy version and model shape and kept in Canopy's cache folder
   * (design.md, "Tuning"). false, or CANOPY_TUNE=off, keeps the defaults; an
   * object tunes with its settings (onProgress reports each step).
   */
  readonly tune?: boolean | TuneOptions
  /**
   * Kernels to run whatever the tuner would choose: a pinned kernel is not
   * tuned. E.g. the stacked level tile and the device family's default
   * matmul, to compare a run with the kernels Canopy ran before tuning.
   */
  readonly kernels?: PinnedKernels
}

export interface PinnedKernels {
  /** the level-attention tile (it must fit the device: levelTileFits) */
  readonly levelTile?: LevelTile
  /** the matmul kernel of each row regime */
  readonly matmul?: MatmulChoice
}
