/**
 * One request inside the scheduler: its samples (waiting, filling, running,
 * done), its events, and what its statistics add up. The scheduler moves
 * samples between those states; this holds what each sample and request
 * knows about itself.
 */
import type { SamplingParams } from "@canopy/kernels"
import type { LevelPlan } from "@canopy/tree-cache"
import type { TextTokenizer } from "../model/tokenizer.ts"
import type {
  AttentionMode, Completion, FinishReason, GenerateEvents, GenerateResult, GenerateStats, SharingMode
} from "./request.ts"
import { StopMatcher } from "./stops.ts"
import type { SampleGroup } from "./tokenize.ts"
import { TokenText } from "./tokenText.ts"

export class SampleJob {
  readonly tokens: Array<number> = []
  readonly stops: StopMatcher
  readonly text: TokenText
  /** admission order (set each time it is admitted): preemption frees the youngest first */
  order = 0

  constructor(readonly request: RequestState, readonly group: SampleGroup, readonly sample: number, tokenizer: TextTokenizer) {
    this.stops = new StopMatcher(group.sampling.stop, tokenizer)
    this.text = new TokenText(tokenizer)
  }

  /** What must be in the trie before it decodes: its prompt, and the tokens it had when it was preempted. */
  context(): ReadonlyArray<number> {
    return this.tokens.length === 0 ? this.group.prompt : [...this.group.prompt, ...this.tokens]
  }

  /**
   * Its randomness is keyed by its group's seed, its sample number and its
   * step: the same sample whatever batch it runs in. `unread`: tokens sampled
   * for it by steps not read back yet.
   */
  samplingParams(unread = 0): SamplingParams {
    const { temperature, topK, topP, seed } = this.group.sampling
    return { temperature, topK, topP, seed, sequence: this.sample >>> 0, step: this.tokens.length + unread }
  }
}

export interface RequestSettings {
  readonly attention: AttentionMode
  readonly sharing: SharingMode
  readonly waves: boolean
  /** samples per wave (waves), and the batch width the idle share is measured against */
  readonly width: number
  /** single-level sharing: this request's groups use namespaces namespaceBase + 1 … */
  readonly namespaceBase: number
  readonly eosIds: ReadonlyArray<number>
  readonly blockCapacity: number
  readonly blockSize: number
}

export class RequestState {
  readonly waiting: Array<SampleJob> = []
  readonly completions: Array<Completion> = []
  readonly totalSamples: number
  running = 0
  filling = 0
  reused = 0
  prefilled = 0
  preemptions = 0
  failure: unknown = undefined
  private readonly stopIds: Map<SampleGroup, ReadonlySet<number>> = new Map()
  private readonly t0 = performance.now()
  private wave = 0
  private steps = 0
  private rows = 0
  private batchRows = 0
  private generated = 0
  private sharingSum = 0
  private prefillMs = 0
  private decodeMs = 0
  private peakBlocks = 0
  private stepRows = 0
  private settled = false

  constructor(
    readonly groups: ReadonlyArray<SampleGroup>,
    readonly settings: RequestSettings,
    readonly events: GenerateEvents,
    readonly signal: AbortSignal | undefined,
    tokenizer: TextTokenizer,
    private readonly settle: { resolve: (r: GenerateResult) => void; reject: (e: unknown) => void }
  ) {
    let total = 0
    for (const g of groups) {
      const eos = g.sampling.ignoreEos ? [] : settings.eosIds
      this.stopIds.set(g, new Set([...g.sampling.stopTokenIds, ...eos]))
      for (let j = 0; j < g.samples; j++) this.waiting.push(new SampleJob(this, g, g.firstSample + j, tokenizer))
      total += g.samples
    }
    this.totalSamples = total
  }

  get attention(): AttentionMode {
    return this.settings.attention
  }

  get waves(): boolean {
    return this.settings.waves
  }

  namespaceOf(group: SampleGroup): number {
    return this.settings.sharing === "tree" ? 0 : this.settings.namespaceBase + group.index + 1
  }

  /** How many samples may be admitted now: any (continuous), or a whole wave once the last one has ended. */
  admissible(): number {
    if (!this.settings.waves) return this.waiting.length
    if (this.running > 0 || this.filling > 0 || this.waiting.length === 0) return 0
    this.wave++
    return this.settings.width
  }

  requeue(jobs: ReadonlyArray<SampleJob>): void {
    this.waiting.unshift(...jobs)
  }

  isDone(): boolean {
    return this.waiting.length === 0 && this.running === 0 && this.filling === 0
  }

  /**
   * Records a sampled token: "continue", why the sample ends, or "failed" when
   * an event handler threw (the request then ends with `failure`).
   */
  take(job: SampleJob, token: number): FinishReason | "continue" | "failed" {
    if (this.stopIds.get(job.group)!.has(token)) return "eos"
    job.tokens.push(token)
    this.generated++
    const emitted = this.guard(() => {
      const text = job.text.next(job.tokens)
      this.events.onToken?.({ path: job.group.path, sample: job.sample, token, text })
    })
    if (!emitted) return "failed"
    if (job.stops.matches(job.tokens)) return "stop"
    if (job.tokens.length >= job.group.sampling.maxTokens) return "length"
    return "continue"
  }

  complete(job: SampleJob, finishReason: FinishReason): void {
    const completion: Completion = {
      path: job.group.path, sample: job.sample, tokens: job.tokens, text: job.stops.finalText(job.tokens), finishReason
    }
    this.completions.push(completion)
    this.guard(() => this.events.onCompletion?.(completion))
  }

  /** A decode step this request had `rows` of; `sharing` is the step's sharingFactor. */
  noteStep(sharing: number, rows: number, batchRows: number, blocksUsed: number): void {
    this.steps++
    this.rows += rows
    this.batchRows += batchRows
    this.sharingSum += sharing
    this.peakBlocks = Math.max(this.peakBlocks, blocksUsed)
    this.stepRows = rows
  }

  emitStep(): void {
    this.guard(() =>
      this.events.onStep?.({
        wave: Math.max(0, this.wave - 1),
        waves: this.settings.waves ? Math.ceil(this.totalSamples / this.settings.width) : 1,
        step: this.steps,
        live: this.stepRows,
        finishedSamples: this.completions.length,
        totalSamples: this.totalSamples,
        generatedTokens: this.generated,
        elapsedSeconds: (performance.now() - this.t0) / 1000
      })
    )
  }

  /** The logits of this request's kept rows of the step (`kept`, by row), `[rows][vocab]` in batch order. */
  emitLogits(
    rows: ReadonlyArray<{ readonly job: SampleJob }>, kept: ReadonlyArray<boolean>, positions: Uint32Array, all: Float32Array, vocab: number
  ): void {
    const onLogits = this.events.onLogits
    if (onLogits === undefined) return
    const mine: Array<number> = []
    for (let r = 0; r < rows.length; r++) if (kept[r] && rows[r]!.job.request === this) mine.push(r)
    const logits = new Float32Array(mine.length * vocab)
    mine.forEach((r, i) => logits.set(all.subarray(r * vocab, (r + 1) * vocab), i * vocab))
    this.guard(() =>
      onLogits({
        rows: mine.map((r) => ({ path: rows[r]!.job.group.path, sample: rows[r]!.job.sample, position: positions[r]! })),
        logits
      })
    )
  }

  /** A turn's time goes to decoding if this request decoded in it, else to prefill if it was filling. */
  noteTime(ms: number, decoded: boolean, filling: boolean): void {
    if (decoded) this.decodeMs += ms
    else if (filling) this.prefillMs += ms
  }

  resolve(): void {
    if (this.settled) return
    this.settled = true
    if (this.failure !== undefined) return this.settle.reject(this.failure)
    this.completions.sort((a, b) => comparePaths(a.path, b.path) || a.sample - b.sample)
    this.settle.resolve({ completions: this.completions, stats: this.stats() })
  }

  reject(reason: unknown): void {
    if (this.settled) return
    this.settled = true
    this.settle.reject(reason)
  }

  /** Runs an event handler; a throw fails the request (it ends at once, nothing else is affected). */
  private guard(f: () => void): boolean {
    if (this.failure !== undefined) return false
    try {
      f()
      return true
    } catch (e) {
      this.failure = e
      return false
    }
  }

  private stats(): GenerateStats {
    const totalSeconds = (performance.now() - this.t0) / 1000
    let promptTokens = 0
    for (const g of this.groups) promptTokens += g.prompt.length * g.samples
    const s = this.settings
    return {
      samples: this.totalSamples,
      generatedTokens: this.generated,
      promptTokens,
      prefillTokens: this.prefilled,
      reusedTokens: this.reused,
      prefillSeconds: this.prefillMs / 1000,
      decodeSeconds: this.decodeMs / 1000,
      totalSeconds,
      decodeTokensPerSecond: this.decodeMs > 0 ? this.generated / (this.decodeMs / 1000) : 0,
      tokensPerSecond: totalSeconds > 0 ? this.generated / totalSeconds : 0,
      steps: this.steps,
      waves: s.waves ? this.wave : 1,
      meanBatch: this.steps > 0 ? this.batchRows / this.steps : 0,
      idleShare: this.steps > 0 ? Math.max(0, 1 - this.rows / (this.steps * s.width)) : 0,
      preemptions: this.preemptions,
      peakBlocks: this.peakBlocks,
      blockCapacity: s.blockCapacity,
      blockSize: s.blockSize,
      sharingFactor: this.steps > 0 ? this.sharingSum / this.steps : 1,
      attention: s.attention,
      sharing: s.sharing
    }
  }
}

/** KV tokens read by all rows over distinct KV tokens read: how much one read of a token serves. */
export const sharingFactor = (plan: LevelPlan): number => {
  let attended = 0
  let distinct = 0
  for (const level of plan.levels) {
    for (let n = 0; n < level.nodeIds.length; n++) {
      const rows = level.queryIndptr[n + 1]! - level.queryIndptr[n]!
      distinct += level.length[n]!
      attended += rows * level.length[n]!
    }
  }
  return distinct > 0 ? attended / distinct : 1
}

const comparePaths = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}
