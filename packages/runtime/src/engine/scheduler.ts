/**
 * The scheduler: every request's samples in one continuously batched loop
 * over the shared prefix trie. Each turn of the loop:
 *
 *   1. ends requests that were aborted or failed (their sequences released);
 *   2. admits waiting samples while the batch has places and the pool has
 *      blocks: a sample joins a fill of its prompt (one per prompt in flight)
 *      that prefills only what the trie does not hold yet; a fill whose whole
 *      prompt is cached joins this turn's decode step at once;
 *   3. submits one decode step over every running sample, of every request;
 *   4. places the next chunk of each fill (at most maxPrefillRows tokens in
 *      all) and submits one prefill forward: a long prompt delays running
 *      samples by one chunk per step, never by the whole prompt;
 *   5. reads the sampled tokens back: finished samples leave (their slots
 *      refill next turn), the others get their token placed in the trie, and
 *      when the pool runs dry the youngest samples are preempted (blocks
 *      freed, requeued with the tokens they have, recomputed when readmitted).
 *
 * With overlap (the default), step 5 reads back the decode step submitted in
 * the turn before, so the GPU runs one step while the CPU plans and encodes
 * the next. Before step 3, each sample of that step still in flight gets a
 * pending token in the trie (PrefixTree.appendPending): its slot is fixed,
 * the token is not known yet, and the new step's row is fed the sampled id on
 * the GPU (ForwardBatch.feed). Step 5 then names the pending tokens. A sample
 * that ends on the token read back has already been given a row of the next
 * step: that row's output is dropped, as SGLang's overlap scheduler drops it,
 * and its pending token leaves the trie with it. A sample whose token limit
 * ends it sits the next step out. Randomness is keyed by each sample's step,
 * so overlap changes no token.
 *
 * The order keeps the engine's fault rule (the trie holds only tokens whose KV
 * is written): tokens are placed either in step 4, right before the forward
 * that writes them, or in step 5, before the next turn's decode step writes
 * them, which is submitted before anything else is placed; pending tokens are
 * placed right before the step that writes them, and none is ever cached
 * unnamed. The forward's queue runs in submission order, so a submitted
 * forward counts as written.
 */
import { type BlockCopy, BlockPoolExhausted, type LevelPlan, type Placement, type SeqId } from "@canopy/tree-cache"
import { sampleBlocks } from "./capacity.ts"
import { NonFiniteLogits } from "./errors.ts"
import type { KvCache } from "./KvCache.ts"
import { type RequestState, type SampleJob, sharingFactor } from "./requestState.ts"
import { NON_FINITE_TOKEN, type PrefillRow, type StepRunner } from "./step.ts"

/** A sample in the decode batch. */
interface Running {
  readonly job: SampleJob
  readonly seq: SeqId
  /** false once it has left the batch (finished, preempted, its request ended) */
  alive: boolean
  /** tokens of `seq` whose KV is written (or submitted to be) */
  written: number
  /** the next step's input, once known */
  last: number
  /** decode steps with a row of it submitted and not read back yet: 0, or 1–2 with overlap */
  unread: number
  /** its row in the last decode step submitted with it */
  row: number
  /** its trie ends in a pending token: what the step read back next samples for it */
  pending: boolean
}

/** A decode step submitted and not read back yet. */
interface DecodeInFlight {
  readonly rows: ReadonlyArray<Running>
  readonly plan: LevelPlan
  readonly positions: Uint32Array
  readonly sampled: Promise<Uint32Array>
  readonly logits: Promise<Float32Array> | undefined
}

/** A prompt (or a preempted sample's prompt and tokens) being placed and prefilled, chunk by chunk; its samples wait on it. */
interface Fill {
  readonly request: RequestState
  readonly context: ReadonlyArray<number>
  readonly namespace: number
  readonly jobs: Array<SampleJob>
  /** a preempted sample's fill: its context holds the sample's tokens, so no other sample may join it */
  readonly resume: boolean
  readonly order: number
  seq: SeqId | undefined
  /** tokens of the context in the trie, each with its KV written or submitted */
  placed: number
}

/**
 * Of what a sample may still write, the share admission sets aside for the
 * samples already running. Lower admits more at once and preempts more often.
 */
const RESERVE_RATIO = 0.5

export class Scheduler {
  private readonly requests: Array<RequestState> = []
  private running: Array<Running> = []
  private fills: Array<Fill> = []
  private looping = false
  /** set once the engine is going away: nothing more is submitted */
  private closed = false
  /** admission order: the youngest sample has the largest */
  private clock = 0
  private prefillInFlight: Promise<void> | undefined
  /** overlap: the decode step submitted last turn, read back this turn */
  private ahead: DecodeInFlight | undefined

  constructor(
    private readonly kv: KvCache,
    private readonly step: StepRunner,
    private readonly vocabSize: number,
    readonly maxBatch: number,
    readonly maxPrefillRows: number,
    /** submit each decode step before reading the last one back (see the header) */
    readonly overlap: boolean
  ) {}

  /** Adds a request; its promise settles when its last sample ends, or when it fails or is aborted. */
  submit(request: RequestState): void {
    if (this.closed) return request.reject(new Error("the engine was destroyed"))
    this.requests.push(request)
    if (this.looping) return
    this.looping = true
    void this.run()
  }

  /** Fails every request and submits nothing more (the engine is going away). */
  shutdown(reason: unknown): void {
    this.closed = true
    this.failAll(reason)
  }

  private failAll(reason: unknown): void {
    for (const r of [...this.requests]) this.end(r, reason)
  }

  private async run(): Promise<void> {
    try {
      while (this.requests.length > 0 && !this.closed) await this.turn()
    } catch (e) {
      // A fault of the step itself (the device, a bug): no request can go on safely.
      this.failAll(e)
    } finally {
      // Synchronous with the loop's last check: a request submitted after it starts a new loop.
      this.looping = false
    }
  }

  private async turn(): Promise<void> {
    const t0 = performance.now()
    for (const r of [...this.requests]) {
      try {
        r.signal?.throwIfAborted()
      } catch (reason) {
        this.end(r, reason)
      }
    }
    this.admit()
    this.startCachedFills()
    const ahead = this.ahead
    this.ahead = undefined
    if (ahead !== undefined) this.placePending(ahead)
    // A sample in flight with no pending token ends on the token read back: it sits this step out.
    const decoding = this.running.filter((s) => s.alive && (s.unread === 0 || s.pending))
    const decode = decoding.length > 0 ? this.submitDecode(decoding) : undefined
    const prefilled = this.submitPrefill()
    const reading = this.overlap ? ahead : decode
    if (this.overlap && decode !== undefined) this.ahead = decode
    if (reading !== undefined) {
      const sampled = await reading.sampled
      if (this.closed) return
      await this.report(reading, sampled)
    } else if (prefilled) {
      // Only prefill: keep at most two forwards in flight, so an abort waits for one chunk, not the whole prompt.
      const done = this.step.idle()
      if (this.prefillInFlight !== undefined) await this.prefillInFlight
      this.prefillInFlight = done
    } else if (decode === undefined) {
      // Nothing to run this turn (samples wait for blocks): let timers, aborts and new requests in.
      await new Promise<void>((resolve) => setTimeout(resolve, 0))
    }
    this.account(decoding, performance.now() - t0)
    for (const r of [...this.requests]) if (r.isDone()) this.finish(r)
  }

  // ---- admission -------------------------------------------------------------

  /** Moves waiting samples into fills while the batch has places and the pool has blocks for them. */
  private admit(): void {
    // A sample whose token limit the step in flight reaches leaves the batch before the next step.
    let places = this.maxBatch - this.running.reduce((n, s) => n + (endsInFlight(s) ? 0 : 1), 0) - this.fills.reduce((n, f) => n + f.jobs.length, 0)
    if (places <= 0) return
    let budget: number | undefined
    for (const request of this.requests) {
      if (!this.compatible(request)) continue
      const quota = request.admissible()
      for (let taken = 0; taken < quota && places > 0; taken++) {
        const job = request.waiting[0]
        if (job === undefined) break
        budget ??= this.freeBlocks()
        const cost = this.admissionCost(request, job)
        const idle = this.running.length === 0 && this.fills.length === 0
        // Nothing running: admit one whatever the estimate (checkFits promised it fits in the whole pool).
        if (!idle && !request.waves && cost > budget) return
        budget -= cost
        request.waiting.shift()
        request.filling++
        this.join(request, job)
        places--
      }
    }
  }

  /** One attention mode per decode batch: requests of another mode wait until the batch drains. */
  private compatible(request: RequestState): boolean {
    const current = this.running[0]?.job.request ?? this.fills[0]?.request
    return current === undefined || current.attention === request.attention
  }

  /** Blocks the pool could give now: free ones, and cached ones no live sequence holds (evictable), less what running samples may still need. */
  private freeBlocks(): number {
    let reserve = 0
    for (const s of this.running) reserve += this.remainingBlocks(s.job)
    for (const f of this.fills) for (const j of f.jobs) reserve += this.remainingBlocks(j)
    return this.kv.tree.pool.free + this.kv.tree.evictableBlocks() - RESERVE_RATIO * reserve
  }

  private remainingBlocks(job: SampleJob): number {
    return sampleBlocks(job.group.sampling.maxTokens - job.tokens.length, this.kv.blockSize)
  }

  /** Blocks a new sample takes now: the part of its context not cached (unless it joins a fill), and a share of its own tokens. */
  private admissionCost(request: RequestState, job: SampleJob): number {
    const own = RESERVE_RATIO * this.remainingBlocks(job)
    if (this.openFill(request, job) !== undefined) return own
    const context = job.context()
    const cached = this.kv.tree.match(context, request.namespaceOf(job.group)).length
    return Math.ceil((context.length - cached) / this.kv.blockSize) + 2 + own
  }

  /** A fresh sample joins the fill of its prompt if one is in flight; otherwise (or resuming) it gets a fill of its own. */
  private join(request: RequestState, job: SampleJob): void {
    job.order = ++this.clock
    const fill = this.openFill(request, job)
    if (fill !== undefined) {
      fill.jobs.push(job)
      return
    }
    this.fills.push({
      request, context: job.context(), namespace: request.namespaceOf(job.group), jobs: [job], resume: job.tokens.length > 0,
      order: job.order, seq: undefined, placed: 0
    })
  }

  /** The fill of a fresh sample's prompt in flight, if any; a resumed sample always gets its own. */
  private openFill(request: RequestState, job: SampleJob): Fill | undefined {
    if (job.tokens.length > 0) return undefined
    return this.fills.find((f) => f.request === request && !f.resume && f.jobs[0]?.group === job.group)
  }

  /**
   * Fills whose whole context the trie holds (more samples of a prompt in the
   * cache, a preempted sample whose tokens stayed cached) need no prefill: their
   * samples join this turn's decode step instead of waiting a turn for it. The
   * trie's one unwritten token per running sample (placed after the last step)
   * may end such a context; that sample's row then writes it in this step too.
   */
  private startCachedFills(): void {
    const tree = this.kv.tree
    let unwritten: Set<number> | undefined
    for (const fill of [...this.fills]) {
      if (fill.seq !== undefined || fill.context.length === 0) continue
      if (tree.match(fill.context, fill.namespace).length < fill.context.length) continue
      let placement: Placement
      try {
        placement = tree.insert(fill.context, fill.namespace)
      } catch (e) {
        if (e instanceof BlockPoolExhausted) continue // a split's copy found no block: the fill waits its turn
        throw e
      }
      this.step.copyBlocks(placement.copies)
      fill.seq = placement.seq
      fill.placed = fill.context.length
      fill.request.reused += fill.context.length
      unwritten ??= this.unwrittenSlots()
      const last = tree.slotOf(fill.seq, fill.context.length - 1)
      this.release(fill, fill.context.length - (unwritten.has(last.block * this.kv.blockSize + last.slot) ? 1 : 0))
    }
  }

  /** The slot of each running sample's token placed after the last decode step, whose KV the next step writes. */
  private unwrittenSlots(): Set<number> {
    const tree = this.kv.tree
    const out = new Set<number>()
    for (const s of this.running) {
      const length = tree.lengthOf(s.seq)
      if (s.written >= length) continue
      const { block, slot } = tree.slotOf(s.seq, length - 1)
      out.add(block * this.kv.blockSize + slot)
    }
    return out
  }

  // ---- the two forwards --------------------------------------------------------

  /** Submits a decode step over `decoding`; a sample with a pending token is fed its row of the step in flight on the GPU. */
  private submitDecode(decoding: ReadonlyArray<Running>): DecodeInFlight {
    const mode = decoding[0]!.job.request.attention
    const submitted = this.step.decode(
      decoding.map((s) => ({
        seq: s.seq, token: s.last, written: s.written, sampling: s.job.samplingParams(s.unread),
        // a pending token is what the step in flight samples at the sample's row there
        ...(s.pending ? { feed: s.row } : {})
      })),
      mode
    )
    const tree = this.kv.tree
    decoding.forEach((s, row) => {
      s.written = tree.lengthOf(s.seq) // a submitted step counts as written
      s.unread++
      s.row = row
    })
    // Read right after the step, before anything else is submitted.
    const logits = decoding.some((s) => s.job.request.events.onLogits !== undefined) ? this.step.readLogits(decoding.length) : undefined
    // Read back a turn later with overlap, or never when every request ends first: a failure is seen where it is awaited.
    submitted.sampled.catch(() => undefined)
    return { rows: decoding, plan: submitted.plan, positions: submitted.positions, sampled: submitted.sampled, logits }
  }

  /**
   * Overlap: a pending token for each sample of `ahead` (oldest first) that
   * goes on after the token being sampled for it, so the next step can write
   * that token's KV before it is read back.
   */
  private placePending(ahead: DecodeInFlight): void {
    const going = ahead.rows.filter((s) => s.alive && !endsInFlight(s))
    this.placeEach(going.sort((a, b) => a.job.order - b.job.order), (s) => {
      const placement = this.kv.tree.appendPending(s.seq)
      s.pending = true
      return placement.copies
    })
  }

  /**
   * Places the next chunk of each fill and submits their rows as one forward;
   * fills whose context is all placed release their samples into the batch.
   * Slots are read after every placement, so a split made by a later
   * placement moves rows of this forward before they are written.
   */
  private submitPrefill(): boolean {
    const rows: Array<PrefillRow> = []
    for (const fill of [...this.fills]) {
      const budget = this.maxPrefillRows - rows.length
      if (budget <= 0 && fill.seq !== undefined) break
      const placed = this.placeChunk(fill, Math.max(0, budget))
      if (placed === undefined) continue
      for (let p = placed.from; p < placed.to; p++) rows.push({ seq: fill.seq!, position: p, token: fill.context[p]! })
    }
    // Submitted at once (its promise settles as soon as it is queued); a GPU fault surfaces at the next read-back.
    if (rows.length > 0) void this.step.prefill(rows)
    for (const fill of [...this.fills]) if (fill.seq !== undefined && fill.placed === fill.context.length) this.release(fill)
    return rows.length > 0
  }

  /** Places up to `budget` new tokens of the fill; returns the positions to prefill, or undefined when the pool has no room now. */
  private placeChunk(fill: Fill, budget: number): { from: number; to: number } | undefined {
    const tree = this.kv.tree
    try {
      if (fill.seq === undefined) {
        const cached = tree.match(fill.context, fill.namespace).length
        const to = Math.min(fill.context.length, cached + budget)
        const placement = tree.insert(fill.context.slice(0, to), fill.namespace)
        fill.seq = placement.seq
        fill.placed = to
        fill.request.reused += placement.newStart
        fill.request.prefilled += to - placement.newStart
        this.step.copyBlocks(placement.copies)
        return { from: placement.newStart, to }
      }
      if (fill.placed === fill.context.length || budget === 0) return undefined
      const to = Math.min(fill.context.length, fill.placed + budget)
      const placement = tree.append(fill.seq, fill.context.slice(fill.placed, to))
      // The chunk's first tokens may follow what the trie already holds: reused, not prefilled.
      fill.request.reused += placement.newStart - fill.placed
      fill.placed = to
      fill.request.prefilled += to - placement.newStart
      this.step.copyBlocks(placement.copies)
      return { from: placement.newStart, to }
    } catch (e) {
      if (!(e instanceof BlockPoolExhausted)) throw e
      // Running samples hold the blocks: wait for some to end. With none running, other fills give theirs
      // back; alone, the fill can never fit (checkFits makes that a bug, reported as the request's failure).
      if (this.running.length === 0) {
        const other = this.fills.findLast((f) => f !== fill)
        if (other !== undefined) this.cancelFill(other)
        else this.end(fill.request, e)
      }
      return undefined
    }
  }

  /** A fill is done: its samples join the batch, each a fork of the fill's sequence with `written` tokens' KV written. */
  private release(fill: Fill, written = fill.context.length): void {
    this.fills.splice(this.fills.indexOf(fill), 1)
    const seq = fill.seq!
    const last = fill.context[fill.context.length - 1]!
    fill.jobs.forEach((job, i) => {
      const own = i === fill.jobs.length - 1 ? seq : this.kv.tree.fork(seq)
      this.running.push({ job, seq: own, alive: true, written, last, unread: 0, row: 0, pending: false })
    })
    fill.request.running += fill.jobs.length
    fill.request.filling -= fill.jobs.length
  }

  // ---- after a decode step -----------------------------------------------------

  /**
   * Hands each row's token to its sample; finished samples leave, the rest get
   * their token placed in the trie (or their pending token named).
   */
  private async report(step: DecodeInFlight, sampled: Uint32Array): Promise<void> {
    const tree = this.kv.tree
    const { rows: decoding, positions } = step
    for (const s of decoding) s.unread--
    // A row of a sample that left the batch while the step ran (it ended on the step before, with overlap) is dropped: it counts nowhere.
    const kept = decoding.map((s) => s.alive)
    const rowsOf = new Map<RequestState, number>()
    let keptRows = 0
    for (let i = 0; i < decoding.length; i++) {
      if (!kept[i]) continue
      const request = decoding[i]!.job.request
      rowsOf.set(request, (rowsOf.get(request) ?? 0) + 1)
      keptRows++
    }
    const sharing = sharingFactor(step.plan)
    for (const [r, rows] of rowsOf) r.noteStep(sharing, rows, keptRows, this.kv.pool.used)
    if (step.logits !== undefined) {
      const all = await step.logits
      for (const r of rowsOf.keys()) r.emitLogits(decoding, kept, positions, all, this.vocabSize)
    }
    const survivors: Array<Running> = []
    for (let i = 0; i < decoding.length; i++) {
      const s = decoding[i]!
      if (!s.alive) continue
      const request = s.job.request
      const token = sampled[i]!
      if (token === NON_FINITE_TOKEN) {
        this.end(request, new NonFiniteLogits({ path: s.job.group.path, sample: s.job.sample, position: positions[i]! }))
        continue
      }
      const outcome = request.take(s.job, token)
      if (outcome === "continue") {
        s.last = token
        if (s.pending) {
          tree.resolvePending(s.seq, token)
          s.pending = false
        } else {
          survivors.push(s)
        }
      } else if (outcome !== "failed") {
        this.drop(s)
        tree.release(s.seq, s.written)
        request.running--
        request.complete(s.job, outcome)
      }
      if (request.failure !== undefined) this.end(request, request.failure)
    }
    for (const r of rowsOf.keys()) if (this.requests.includes(r)) r.emitStep()
    for (const r of rowsOf.keys()) if (r.failure !== undefined) this.end(r, r.failure)
    this.placeTokens(survivors.sort((a, b) => a.job.order - b.job.order))
    this.running = this.running.filter((s) => s.alive)
  }

  /** Places each survivor's token, oldest first. */
  private placeTokens(survivors: Array<Running>): void {
    this.placeEach(survivors, (s) => this.kv.tree.append(s.seq, [s.last]).copies)
  }

  /** Places a token for each sample in turn; when the pool is dry, the youngest give their blocks back. */
  private placeEach(samples: ReadonlyArray<Running>, place: (s: Running) => ReadonlyArray<BlockCopy>): void {
    for (const s of samples) {
      while (s.alive) {
        try {
          this.step.copyBlocks(place(s))
          break
        } catch (e) {
          if (!(e instanceof BlockPoolExhausted)) throw e
          if (!this.preemptYounger(s)) {
            this.preempt(s)
            break
          }
        }
      }
    }
  }

  /** Frees the youngest fill or running sample younger than `s`; false when there is none. */
  private preemptYounger(s: Running): boolean {
    let youngest: Running | Fill | undefined
    for (const f of this.fills) if (f.order > s.job.order && (youngest === undefined || f.order > orderOf(youngest))) youngest = f
    for (const r of this.running) if (r.alive && r.job.order > s.job.order && (youngest === undefined || r.job.order > orderOf(youngest))) youngest = r
    if (youngest === undefined) return false
    if ("job" in youngest) this.preempt(youngest)
    else this.cancelFill(youngest)
    return true
  }

  /**
   * Ends a running sample for now: its blocks go back (written tokens stay
   * cached), and it waits to be recomputed with the tokens it has (what a step
   * in flight samples for it is dropped, and sampled again the same).
   */
  private preempt(s: Running): void {
    this.drop(s)
    this.kv.tree.release(s.seq, s.written)
    const request = s.job.request
    request.running--
    request.requeue([s.job])
    request.preemptions++
  }

  private cancelFill(fill: Fill): void {
    this.fills.splice(this.fills.indexOf(fill), 1)
    if (fill.seq !== undefined) this.kv.tree.release(fill.seq, fill.placed)
    fill.request.filling -= fill.jobs.length
    fill.request.requeue(fill.jobs)
  }

  /** Takes a sample out of the batch; the batch array itself is compacted once per step (report). */
  private drop(s: Running): void {
    s.alive = false
  }

  // ---- ending requests ---------------------------------------------------------

  /** Ends a request early (an abort, a failure): every sequence it holds is released with what it has written; its promise rejects. */
  private end(request: RequestState, reason: unknown): void {
    this.releaseAll(request)
    request.reject(reason)
  }

  private finish(request: RequestState): void {
    this.releaseAll(request)
    request.resolve()
  }

  private releaseAll(request: RequestState): void {
    const i = this.requests.indexOf(request)
    if (i >= 0) this.requests.splice(i, 1)
    const tree = this.kv.tree
    const mine = this.running.filter((x) => x.alive && x.job.request === request)
    for (const s of mine) s.alive = false
    this.running = this.running.filter((x) => x.alive)
    for (const s of mine) if (tree.isLive(s.seq)) tree.release(s.seq, s.written)
    for (const f of this.fills.filter((x) => x.request === request)) {
      this.fills.splice(this.fills.indexOf(f), 1)
      if (f.seq !== undefined && tree.isLive(f.seq)) tree.release(f.seq, f.placed)
    }
    request.waiting.length = 0
    request.running = 0
    request.filling = 0
  }

  private account(decoding: ReadonlyArray<Running>, ms: number): void {
    const decoded = new Set(decoding.map((s) => s.job.request))
    for (const r of this.requests) r.noteTime(ms, decoded.has(r), this.fills.some((f) => f.request === r))
    for (const r of decoded) if (!this.requests.includes(r)) r.noteTime(ms, true, false)
  }
}

const orderOf = (x: Running | Fill): number => ("job" in x ? x.job.order : x.order)

/** The tokens steps in flight sample for it reach its limit: it ends when they are read back. */
const endsInFlight = (s: Running): boolean => s.unread > 0 && s.job.tokens.length + s.unread >= s.job.group.sampling.maxTokens
