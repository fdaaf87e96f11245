/**
 * The engine: a prompt tree in, sampled completions out.
 *
 *   1. Each leaf's prompt is inserted into the prefix trie; only tokens not
 *      already cached are prefilled, so every tree node is prefilled once
 *      (its tokens attend their ancestors through the level machinery and
 *      themselves causally).
 *   2. Each leaf's n samples are forks of its prompt sequence. All live
 *      samples of the whole tree decode together, one batch per step: per
 *      layer one attention dispatch per tree level, then the merge; the only
 *      CPU round trip of a step is reading back the sampled token ids.
 *   3. Finished samples release their path; shared nodes stay cached for
 *      reuse until memory is needed (LRU). A request larger than the KV pool
 *      runs in waves; one that can never fit is refused before any work.
 */
import {
  checkDeviceAlive, createPagedDecode, createTreeAttention, type KvDtype, NON_FINITE_TOKEN, type PreparedAttention, type SamplingParams,
  type TreeAttention
} from "@canopy/kernels"
import { type BlockCopy, planLevels, type SeqId } from "@canopy/tree-cache"
import { Forward, type ForwardBatch } from "../model/forward.ts"
import type { LoadedModel } from "../model/model.ts"
import { ContextTooLong, EngineCapacityError, InvalidEngineOptions, InvalidSampling, NonFiniteLogits } from "./errors.ts"
import { KvCache } from "./KvCache.ts"
import { planRows } from "./planRows.ts"
import { addSamples, checkDepth, InvalidPromptTree, jsonPathOf, pathOf, type PromptTree, walkPromptTree } from "./PromptTree.ts"
import { StopMatcher } from "./stops.ts"
import { TokenText } from "./tokenText.ts"

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

export interface GenerateRequest {
  readonly tree: PromptTree
  readonly sampling?: Partial<SamplingOptions>
  readonly attention?: AttentionMode
  readonly sharing?: SharingMode
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

export interface GenerateEvents {
  readonly onStep?: (progress: StepProgress) => void
  /** each generated token as it is sampled, with the text it adds (see TokenText: "" while a UTF-8 character is incomplete) */
  readonly onToken?: (event: TokenEvent) => void
  readonly onCompletion?: (completion: Completion) => void
  /**
   * The logits each decode step sampled from, `[rows][vocab]` with row r the
   * sample `rows[r]`. Reading them back costs a copy per step: set it only to inspect.
   */
  readonly onLogits?: (event: {
    readonly rows: ReadonlyArray<{ readonly path: ReadonlyArray<number>; readonly sample: number; readonly position: number }>
    readonly logits: Float32Array
  }) => void
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
  /** most samples decoding at once (default 1024; more wait for a later wave) */
  readonly maxBatch?: number
  /** most prompt tokens per prefill forward (default 256) */
  readonly maxPrefillRows?: number
}

interface Group {
  readonly index: number
  readonly path: ReadonlyArray<number>
  readonly prompt: ReadonlyArray<number>
  readonly samples: number
}

interface SampleJob {
  readonly group: Group
  readonly sample: number
  /** stable across waves, modes and batch order: seeds the sample's randomness */
  readonly ordinal: number
}

interface LiveSample {
  readonly job: SampleJob
  readonly seq: SeqId
  readonly tokens: Array<number>
  readonly stops: StopMatcher
  readonly text: TokenText
  last: number
}

/**
 * Rows whose KV is already cached, or written by another row of the same step,
 * get this block: the append kernel skips them, so a slot's KV is written once.
 */
const NO_WRITE = 0xffffffff

export class TreeEngine {
  private constructor(
    readonly model: LoadedModel,
    readonly kv: KvCache,
    private readonly forward: Forward,
    private readonly hydragen: TreeAttention,
    private readonly baseline: TreeAttention,
    private readonly device: GPUDevice,
    readonly maxBatch: number,
    readonly maxPrefillRows: number,
    private readonly current: { attention: TreeAttention | undefined; prepared: PreparedAttention | undefined }
  ) {}

  static async create(device: GPUDevice, model: LoadedModel, options: EngineOptions = {}): Promise<TreeEngine> {
    const c = model.config
    const blockSize = options.blockSize ?? 16
    const maxBatch = options.maxBatch ?? 1024
    const maxPrefillRows = options.maxPrefillRows ?? 256
    checkRows(device, c, "maxBatch", maxBatch)
    checkRows(device, c, "maxPrefillRows", maxPrefillRows)
    const kv = await KvCache.create(device, c, {
      blockSize,
      ...(options.kvBlocks !== undefined ? { numBlocks: options.kvBlocks } : {}),
      ...(options.kvMemoryBytes !== undefined ? { memoryBytes: options.kvMemoryBytes } : {}),
      ...(options.kvShards !== undefined ? { shards: options.kvShards } : {}),
      ...(options.kvDtype !== undefined ? { kvDtype: options.kvDtype } : {})
    })
    const shape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, blockSize, poolShards: kv.shards, kvDtype: kv.kvDtype }
    const owned: Array<{ destroy(): void }> = [kv]
    try {
      const hydragen = await createTreeAttention(device, shape)
      owned.push(hydragen)
      const baseline = await createPagedDecode(device, shape)
      owned.push(baseline)
      const current: { attention: TreeAttention | undefined; prepared: PreparedAttention | undefined } = {
        attention: hydragen,
        prepared: undefined
      }
      const forward = await Forward.create(device, model.weights, {
        maxRows: Math.max(maxBatch, maxPrefillRows),
        maxLogitRows: maxBatch,
        kvPools: kv.pools,
        blockSize,
        numBlocks: kv.numBlocks,
        poolShards: kv.shards,
        kvDtype: kv.kvDtype,
        attention: (encoder, _layer, buffers) => current.attention?.encode(encoder, current.prepared!, buffers)
      })
      return new TreeEngine(model, kv, forward, hydragen, baseline, device, maxBatch, maxPrefillRows, current)
    } catch (e) {
      for (const o of owned) o.destroy()
      throw e
    }
  }

  /**
   * Drops every cached prefix no running request holds, returning its KV blocks
   * to the pool (the next request prefills from scratch). Returns the blocks freed.
   */
  clearCache(): number {
    return this.kv.tree.evict(this.kv.numBlocks)
  }

  destroy(): void {
    this.forward.destroy()
    this.hydragen.destroy()
    this.baseline.destroy()
    this.kv.destroy()
  }

  /**
   * Runs a request to completion; events report progress and stream tokens.
   * An aborted `signal` stops it between steps or prefill chunks (rejecting
   * with the signal's reason), with every sequence released.
   *
   * Fault safety rests on one rule: the trie keeps only tokens whose KV is
   * written. A token is placed in the trie before the forward that writes its
   * KV (a prompt before its prefill, a sampled token before the next step), so
   * `written` follows, per live sequence, how many of its tokens have KV; every
   * exit releases each sequence with that count, and the trie drops the rest.
   */
  async generate(request: GenerateRequest, events: GenerateEvents = {}, signal?: AbortSignal): Promise<GenerateResult> {
    const sampling = resolveSampling(request.sampling ?? {}, this.model.config.vocabSize)
    const attention = request.attention ?? "hydragen"
    const sharing = request.sharing ?? "tree"
    const groups = this.tokenizeTree(request.tree, sampling.maxTokens)
    const jobs: Array<SampleJob> = []
    for (const group of groups) for (let sample = 0; sample < group.samples; sample++) jobs.push({ group, sample, ordinal: jobs.length })
    const waveSize = this.waveSize(groups, sampling.maxTokens, sharing)
    const eos = sampling.ignoreEos ? [] : [...this.model.config.eosTokenIds, ...this.model.tokenizer.eosIds]
    const run: RunState = {
      sampling, sharing, events, signal,
      stopTokenIds: new Set([...sampling.stopTokenIds, ...eos]),
      t0: performance.now(), prefillMs: 0, decodeMs: 0, steps: 0, generated: 0, prefillTokens: 0, reusedTokens: 0,
      peakBlocks: this.kv.pool.used, sharingSum: 0, completions: [], totalSamples: jobs.length, wave: 0,
      waves: Math.ceil(jobs.length / waveSize)
    }
    this.current.attention = attention === "hydragen" ? this.hydragen : attention === "baseline" ? this.baseline : undefined

    for (; run.wave < run.waves; run.wave++) {
      const wave = jobs.slice(run.wave * waveSize, (run.wave + 1) * waveSize)
      const written = new Map<SeqId, number>()
      try {
        const live = await this.prefillWave(wave, run, written)
        await this.decodeWave(live, run, written)
      } finally {
        // Every exit, a failure or an abort included: nothing stays locked, and no token without KV stays cached.
        for (const [seq, count] of written) if (this.kv.tree.isLive(seq)) this.kv.tree.release(seq, count)
      }
    }

    run.completions.sort((a, b) => comparePaths(a.path, b.path) || a.sample - b.sample)
    return { completions: run.completions, stats: this.stats(run, jobs, attention) }
  }

  /** Prefills every leaf prompt of the wave (each node's new tokens once) and forks one live sample per job. */
  private async prefillWave(wave: ReadonlyArray<SampleJob>, run: RunState, written: Map<SeqId, number>): Promise<Array<LiveSample>> {
    const tree = this.kv.tree
    const tp = performance.now()
    const promptSeq = new Map<Group, SeqId>()
    for (const job of wave) {
      const g = job.group
      if (promptSeq.has(g)) continue
      run.signal?.throwIfAborted()
      const placed = tree.insert(g.prompt, run.sharing === "single-level" ? g.index + 1 : 0)
      promptSeq.set(g, placed.seq)
      written.set(placed.seq, placed.newStart)
      // A split's copies read KV written before it, and rows' slots may move
      // in the next split: each insert is prefilled before the tree changes again.
      if (placed.copies.length > 0) {
        const encoder = this.device.createCommandEncoder({ label: "kv-block-copies" })
        this.kv.encodeCopies(encoder, placed.copies)
        this.device.queue.submit([encoder.finish()])
      }
      const rows = []
      for (let p = placed.newStart; p < g.prompt.length; p++) rows.push({ seq: placed.seq, position: p, token: g.prompt[p]! })
      await this.prefill(rows, run.signal, (done) => written.set(placed.seq, placed.newStart + done))
      run.prefillTokens += rows.length
      run.reusedTokens += placed.newStart
    }
    // Prefill forwards queue up without waiting; the phase's time ends when the GPU is done.
    await this.device.queue.onSubmittedWorkDone()
    run.peakBlocks = Math.max(run.peakBlocks, this.kv.pool.used)
    const live: Array<LiveSample> = []
    const used = new Set<SeqId>()
    for (const job of wave) {
      const first = promptSeq.get(job.group)!
      const seq = used.has(first) ? tree.fork(first) : first
      used.add(first)
      written.set(seq, job.group.prompt.length)
      live.push({
        job,
        seq,
        tokens: [],
        stops: new StopMatcher(run.sampling.stop, this.model.tokenizer),
        text: new TokenText(this.model.tokenizer),
        last: job.group.prompt[job.group.prompt.length - 1]!
      })
    }
    run.prefillMs += performance.now() - tp
    return live
  }

  /** Decodes the wave's live samples as one batch per step until every one has finished. */
  private async decodeWave(live: Array<LiveSample>, run: RunState, written: Map<SeqId, number>): Promise<void> {
    const tree = this.kv.tree
    const td = performance.now()
    while (live.length > 0) {
      run.signal?.throwIfAborted()
      const plan = planLevels(tree, live.map((s) => s.seq))
      run.sharingSum += sharingFactor(plan)
      const batch = this.decodeBatch(live, run, written)
      const sampled = await this.run(plan, batch)
      // The step wrote the KV of every row's input token: each sequence's whole length now has KV.
      for (const s of live) written.set(s.seq, tree.lengthOf(s.seq))
      run.steps++
      if (run.events.onLogits !== undefined) {
        const logits = await this.forward.readLogits(live.length)
        run.events.onLogits({
          rows: live.map((s, r) => ({ path: s.job.group.path, sample: s.job.sample, position: batch.positions[r]! })),
          logits
        })
      }
      const copies = this.advanceAll(live, sampled, batch.positions, run, written)
      if (copies.length > 0) {
        const encoder = this.device.createCommandEncoder({ label: "kv-block-copies" })
        this.kv.encodeCopies(encoder, copies)
        this.device.queue.submit([encoder.finish()])
      }
      run.peakBlocks = Math.max(run.peakBlocks, this.kv.pool.used)
      run.events.onStep?.({
        wave: run.wave,
        waves: run.waves,
        step: run.steps,
        live: batch.tokens.length,
        finishedSamples: run.completions.length,
        totalSamples: run.totalSamples,
        generatedTokens: run.generated,
        elapsedSeconds: (performance.now() - run.t0) / 1000
      })
    }
    run.decodeMs += performance.now() - td
  }

  /** One decode step's inputs: each live sample's last token, written to its slot unless its KV is already there. */
  private decodeBatch(live: ReadonlyArray<LiveSample>, run: RunState, written: ReadonlyMap<SeqId, number>): ForwardBatch {
    const tree = this.kv.tree
    const rows = live.length
    const tokens = new Uint32Array(rows)
    const positions = new Uint32Array(rows)
    const slots = new Uint32Array(2 * rows)
    const claimed = new Set<number>()
    const sampling: Array<SamplingParams> = []
    for (let r = 0; r < rows; r++) {
      const s = live[r]!
      const position = tree.lengthOf(s.seq) - 1
      const { block, slot } = tree.slotOf(s.seq, position)
      const key = block * this.kv.blockSize + slot
      tokens[r] = s.last
      positions[r] = position
      // The prompt's last token is prefilled, and forks that sampled the same token share its slot: write each slot once.
      slots[2 * r] = written.get(s.seq)! > position || claimed.has(key) ? NO_WRITE : block
      slots[2 * r + 1] = slot
      claimed.add(key)
      const { temperature, topK, topP, seed } = run.sampling
      sampling.push({ temperature, topK, topP, seed, sequence: s.job.ordinal, step: s.tokens.length })
    }
    const logitRows = new Uint32Array(rows)
    for (let r = 0; r < rows; r++) logitRows[r] = r
    return { tokens, positions, slots, logitRows, sampling }
  }

  /**
   * Records each row's sampled token: finished samples leave `live` (released,
   * their completion reported); the others get the token placed in the trie,
   * its KV to be written by the next step. Returns the block copies those
   * placements need.
   */
  private advanceAll(
    live: Array<LiveSample>, sampled: Uint32Array, positions: Uint32Array, run: RunState, written: Map<SeqId, number>
  ): Array<BlockCopy> {
    const tree = this.kv.tree
    const copies: Array<BlockCopy> = []
    for (let r = 0; r < live.length; r++) {
      if (sampled[r] === NON_FINITE_TOKEN) {
        const s = live[r]!
        throw new NonFiniteLogits({ path: s.job.group.path, sample: s.job.sample, position: positions[r]! })
      }
    }
    for (let r = live.length - 1; r >= 0; r--) {
      const s = live[r]!
      const token = sampled[r]!
      const reason = this.advance(s, token, run.stopTokenIds, run.sampling.maxTokens)
      if (reason !== "eos") {
        run.generated++
        run.events.onToken?.({ path: s.job.group.path, sample: s.job.sample, token, text: s.text.next(s.tokens) })
      }
      if (reason === undefined) {
        for (const c of tree.append(s.seq, [token]).copies) copies.push(c)
        s.last = token
        continue
      }
      live.splice(r, 1)
      tree.release(s.seq, written.get(s.seq))
      written.delete(s.seq)
      const completion: Completion = {
        path: s.job.group.path,
        sample: s.job.sample,
        tokens: s.tokens,
        text: s.stops.finalText(s.tokens),
        finishReason: reason
      }
      run.completions.push(completion)
      run.events.onCompletion?.(completion)
    }
    return copies
  }

  private stats(run: RunState, jobs: ReadonlyArray<SampleJob>, attention: AttentionMode): GenerateStats {
    const totalSeconds = (performance.now() - run.t0) / 1000
    let promptTokens = 0
    for (const j of jobs) promptTokens += j.group.prompt.length
    return {
      samples: jobs.length,
      generatedTokens: run.generated,
      promptTokens,
      prefillTokens: run.prefillTokens,
      reusedTokens: run.reusedTokens,
      prefillSeconds: run.prefillMs / 1000,
      decodeSeconds: run.decodeMs / 1000,
      totalSeconds,
      decodeTokensPerSecond: run.decodeMs > 0 ? run.generated / (run.decodeMs / 1000) : 0,
      tokensPerSecond: totalSeconds > 0 ? run.generated / totalSeconds : 0,
      steps: run.steps,
      waves: run.waves,
      peakBlocks: run.peakBlocks,
      blockCapacity: this.kv.numBlocks,
      blockSize: this.kv.blockSize,
      sharingFactor: run.steps > 0 ? run.sharingSum / run.steps : 1,
      attention,
      sharing: run.sharing
    }
  }

  /** Records the sampled token; returns why the sample ends, if it does. */
  private advance(s: LiveSample, token: number, stopTokenIds: ReadonlySet<number>, maxTokens: number): FinishReason | undefined {
    if (stopTokenIds.has(token)) return "eos"
    s.tokens.push(token)
    if (s.stops.matches(s.tokens)) return "stop"
    if (s.tokens.length >= maxTokens) return "length"
    return undefined
  }

  /**
   * Prefills rows (prompt tokens whose KV is not cached), in forwards of at
   * most maxPrefillRows. At most two chunks are in flight, so an abort between
   * chunks waits for one chunk rather than the whole prompt; `submitted` hears
   * how many rows are submitted (the queue runs them in order, before anything
   * later reads their KV).
   */
  private async prefill(
    rows: ReadonlyArray<{ seq: SeqId; position: number; token: number }>, signal: AbortSignal | undefined, submitted: (rows: number) => void
  ): Promise<void> {
    const tree = this.kv.tree
    const saved = this.current.attention
    // Prefill always runs the level kernels: the modes differ in how decoding attends.
    this.current.attention = this.hydragen
    let previous: Promise<void> | undefined
    try {
      for (let at = 0; at < rows.length; at += this.maxPrefillRows) {
        if (at > 0) signal?.throwIfAborted()
        const chunk = rows.slice(at, at + this.maxPrefillRows)
        const slots = new Uint32Array(2 * chunk.length)
        chunk.forEach((r, i) => {
          const { block, slot } = tree.slotOf(r.seq, r.position)
          slots[2 * i] = block
          slots[2 * i + 1] = slot
        })
        const plan = planRows(tree, chunk.map((r) => r.seq), chunk.map((r) => r.position))
        await this.run(plan, {
          tokens: Uint32Array.from(chunk, (r) => r.token),
          positions: Uint32Array.from(chunk, (r) => r.position),
          slots,
          logitRows: new Uint32Array(0),
          sampling: []
        })
        submitted(at + chunk.length)
        const done = this.device.queue.onSubmittedWorkDone()
        if (previous !== undefined) await previous
        previous = done
      }
    } finally {
      this.current.attention = saved
    }
  }

  /** One forward over a plan: prepare attention, run, wait, free the plan's buffers. */
  private async run(plan: Parameters<TreeAttention["prepare"]>[0], batch: ForwardBatch): Promise<Uint32Array> {
    checkDeviceAlive(this.device)
    const prepared = this.current.attention?.prepare(plan)
    this.current.prepared = prepared
    try {
      const sampled = await this.forward.step(batch).catch((e: unknown) => {
        checkDeviceAlive(this.device) // a read-back fails when the device is lost: say why
        throw e
      })
      checkDeviceAlive(this.device)
      return sampled
    } finally {
      this.current.prepared = undefined
      prepared?.destroy()
    }
  }

  /**
   * Leaf groups with their token prompts (BOS first, from the root's text).
   * Walks the tree without recursion, and spells out a prompt only for nodes
   * that ask for samples, after checking its length against the model's
   * positions: a deep or wide tree costs what its samples need, no more.
   */
  private tokenizeTree(root: PromptTree, maxTokens: number): Array<Group> {
    const tok = this.model.tokenizer
    const vocab = this.model.config.vocabSize
    const maxPositions = this.model.config.maxPositionEmbeddings
    const groups: Array<Group> = []
    const own = new Map<PromptTree, { readonly tokens: ReadonlyArray<number>; readonly length: number }>()
    let total = 0
    for (const w of walkPromptTree(root)) {
      // A tree built in code never went through parsePromptTree: the same bounds, checked here.
      checkDepth(w)
      const tokens = w.node.tokens ?? tok.encode(w.node.text ?? "", { addBos: w.parent === undefined })
      for (const t of tokens) {
        if (!Number.isInteger(t) || t < 0 || t >= vocab) {
          throw new InvalidPromptTree({ path: jsonPathOf(w), problem: `token ${t} is outside the vocabulary (0..${vocab - 1})` })
        }
      }
      const length = (w.parent === undefined ? 0 : own.get(w.parent.node)!.length) + tokens.length
      own.set(w.node, { tokens, length })
      const samples = w.node.samples ?? 0
      if (samples === 0) continue
      if (length === 0) throw new InvalidPromptTree({ path: jsonPathOf(w), problem: "asks for samples of an empty prompt" })
      if (length + maxTokens > maxPositions) throw new ContextTooLong({ path: pathOf(w), promptTokens: length, maxTokens, maxPositions })
      total = addSamples(w, total, samples)
      const prompt = new Array<number>(length)
      let end = length
      for (let at: typeof w | undefined = w; at !== undefined; at = at.parent) {
        const piece = own.get(at.node)!.tokens
        end -= piece.length
        for (let i = 0; i < piece.length; i++) prompt[end + i] = piece[i]!
      }
      groups.push({ index: groups.length, path: pathOf(w), prompt, samples })
    }
    if (groups.length === 0) throw new InvalidPromptTree({ path: "$", problem: `asks for no samples: give some node "samples": N` })
    return groups
  }

  /**
   * How many samples decode at once: the batch limit, or what the KV pool
   * holds next to the prompts. Refuses a request that could never fit.
   */
  private waveSize(groups: ReadonlyArray<Group>, maxTokens: number, sharing: SharingMode): number {
    const bs = this.kv.blockSize
    const capacity = this.kv.numBlocks
    // A sample's own tokens start in a fresh block at its prompt's end slot.
    const perSample = Math.ceil((bs - 1 + maxTokens) / bs)
    const promptBlocks = (prompts: ReadonlyArray<ReadonlyArray<number>>): number =>
      sharing === "tree" ? treeBlocks(prompts, bs) : prompts.reduce((n, p) => n + Math.ceil(p.length / bs), 0)
    let largest = 0
    for (const g of groups) largest = Math.max(largest, promptBlocks([g.prompt]))
    if (largest + perSample > capacity) {
      throw new EngineCapacityError({
        neededBlocks: largest + perSample,
        capacityBlocks: capacity,
        blockSize: bs,
        reason: `one prompt (${largest} blocks) and one sample of ${maxTokens} tokens (${perSample} blocks) exceed the KV pool (give the cache more memory: kvMemoryBytes, or --kv-memory on the command line)`
      })
    }
    const all = promptBlocks(groups.map((g) => g.prompt))
    return Math.max(1, Math.min(this.maxBatch, Math.floor((capacity - all) / perSample)))
  }
}

/** What one request accumulates across its waves. */
interface RunState {
  readonly sampling: SamplingOptions
  readonly sharing: SharingMode
  readonly events: GenerateEvents
  readonly signal: AbortSignal | undefined
  readonly stopTokenIds: ReadonlySet<number>
  readonly t0: number
  readonly totalSamples: number
  readonly waves: number
  readonly completions: Array<Completion>
  wave: number
  prefillMs: number
  decodeMs: number
  steps: number
  generated: number
  prefillTokens: number
  reusedTokens: number
  peakBlocks: number
  sharingSum: number
}

/** The most rows one forward may hold: a batch this large is far past any GPU's memory for activations. */
export const MAX_BATCH_ROWS = 65_536

/** A row limit must be an integer the forward's scratch buffers can hold within one storage binding. */
const checkRows = (device: GPUDevice, c: LoadedModel["config"], field: string, rows: number): void => {
  if (!Number.isInteger(rows) || rows < 1 || rows > MAX_BATCH_ROWS) {
    throw new InvalidEngineOptions({ field, problem: `must be an integer from 1 to ${MAX_BATCH_ROWS}, got ${rows}` })
  }
  // The widest per-row scratch: the gate/up projections, or the logits.
  const rowBytes = 4 * Math.max(2 * c.intermediateSize, c.vocabSize, c.numHeads * c.headDim)
  const binding = device.limits.maxStorageBufferBindingSize
  if (rows * rowBytes > binding) {
    throw new InvalidEngineOptions({
      field,
      problem: `${rows} rows need ${rows * rowBytes} bytes of scratch per buffer, more than one storage binding (${binding} bytes) on this device; at most ${Math.floor(binding / rowBytes)}`
    })
  }
}

/** Blocks the prompts take in a trie: distinct prefixes, plus a partial block and a split copy per branch. */
const treeBlocks = (prompts: ReadonlyArray<ReadonlyArray<number>>, blockSize: number): number => {
  const root = new Map<number, unknown>()
  let distinct = 0
  let branches = 0
  for (const p of prompts) {
    let node = root
    for (const t of p) {
      let next = node.get(t) as Map<number, unknown> | undefined
      if (next === undefined) {
        if (node.size > 0) branches++
        next = new Map()
        node.set(t, next)
        distinct++
      }
      node = next
    }
  }
  return Math.ceil(distinct / blockSize) + 2 * (branches + prompts.length)
}

/** KV tokens read by all rows over distinct KV tokens read: how much one read of a token serves. */
const sharingFactor = (plan: ReturnType<typeof planLevels>): number => {
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

const resolveSampling = (given: Partial<SamplingOptions>, vocab: number): SamplingOptions => {
  const s = { ...DEFAULT_SAMPLING, ...given }
  const bad = (field: string, problem: string): never => {
    throw new InvalidSampling({ field, problem })
  }
  if (!Number.isFinite(s.temperature) || s.temperature < 0) bad("temperature", `must be ≥ 0, got ${s.temperature}`)
  if (!Number.isInteger(s.topK) || s.topK < 0) bad("topK", `must be an integer ≥ 0, got ${s.topK}`)
  if (!Number.isFinite(s.topP) || s.topP <= 0 || s.topP > 1) bad("topP", `must be in (0, 1], got ${s.topP}`)
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > 0xffffffff) bad("seed", `must be an integer from 0 to 2³²−1, got ${s.seed}`)
  if (!Number.isInteger(s.maxTokens) || s.maxTokens < 1) bad("maxTokens", `must be an integer ≥ 1, got ${s.maxTokens}`)
  for (const t of s.stopTokenIds) {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) bad("stopTokenIds", `${t} is not a token id (0..${vocab - 1})`)
  }
  if (s.stop.some((x) => x.length === 0)) bad("stop", "stop strings must not be empty")
  return s
}
