/**
 * One forward of the model over rows of the trie: plan → attention → forward
 * → sampled ids. It knows nothing of requests; the scheduler gives it rows.
 *
 *   decode(rows): each running sample's newest token, attended with the
 *     kernels the batch asks for (hydragen, baseline or none), sampled.
 *   prefill(rows): prompt tokens whose KV is not cached, attended with the
 *     level kernels (ancestors fully, their own node causally), no sampling.
 */
import { checkDeviceAlive, NON_FINITE_TOKEN, type TreeAttention } from "@canopy/kernels"
import { type BlockCopy, type LevelPlan, LevelPlanner, type SeqId } from "@canopy/tree-cache"
import type { Forward, PassAttention } from "../model/forward.ts"
import type { KvCache } from "./KvCache.ts"
import { DecodeBatchBuilder, type DecodeRow } from "./decodeBatch.ts"
import { planRows } from "./planRows.ts"
import type { AttentionMode } from "./request.ts"

export { NON_FINITE_TOKEN }

export interface PrefillRow {
  readonly seq: SeqId
  readonly position: number
  readonly token: number
}

export class StepRunner {
  private readonly decodeBatch: DecodeBatchBuilder
  /** decode steps over the same samples keep their plan's structure (LevelPlanner) */
  private readonly planner = new LevelPlanner()

  constructor(
    private readonly device: GPUDevice,
    private readonly kv: KvCache,
    private readonly forward: Forward,
    private readonly attention: { readonly hydragen: TreeAttention; readonly baseline: TreeAttention }
  ) {
    this.decodeBatch = new DecodeBatchBuilder(kv.tree)
  }

  /**
   * Submits one decode step and returns the plan (for statistics) at once, and
   * the sampled token per row (NON_FINITE_TOKEN where the logits were not
   * finite) once the GPU is done. The KV of every row's input token is written
   * by the time anything submitted later runs.
   */
  decode(rows: ReadonlyArray<DecodeRow>, mode: AttentionMode): { readonly plan: LevelPlan; readonly positions: Uint32Array; readonly sampled: Promise<Uint32Array> } {
    const batch = this.decodeBatch.inputs(rows)
    const plan = this.planner.plan(this.kv.tree, batch.seqs)
    const kernels = mode === "hydragen" ? this.attention.hydragen : mode === "baseline" ? this.attention.baseline : undefined
    return { plan, positions: batch.positions, sampled: this.run(plan, kernels, batch) }
  }

  /** Submits one prefill forward of `rows` (at most the forward's row limit); resolves once it is submitted. */
  prefill(rows: ReadonlyArray<PrefillRow>): Promise<Uint32Array> {
    const tree = this.kv.tree
    const slots = new Uint32Array(2 * rows.length)
    for (let i = 0; i < rows.length; i++) {
      const { block, slot } = tree.slotOf(rows[i]!.seq, rows[i]!.position)
      slots[2 * i] = block
      slots[2 * i + 1] = slot
    }
    const plan = planRows(tree, rows.map((r) => r.seq), rows.map((r) => r.position))
    return this.run(plan, this.attention.hydragen, {
      tokens: Uint32Array.from(rows, (r) => r.token),
      positions: Uint32Array.from(rows, (r) => r.position),
      slots,
      logitRows: new Uint32Array(0),
      sampling: []
    })
  }

  /** Copies of KV blocks a trie split asks for, queued before anything submitted later. */
  copyBlocks(copies: ReadonlyArray<BlockCopy>): void {
    if (copies.length === 0) return
    const encoder = this.device.createCommandEncoder({ label: "kv-block-copies" })
    this.kv.encodeCopies(encoder, copies)
    this.device.queue.submit([encoder.finish()])
  }

  /** The logits of the last decode step's first `rows` rows, `[rows][vocab]`. */
  readLogits(rows: number): Promise<Float32Array> {
    return this.forward.readLogits(rows)
  }

  /** Resolves once everything submitted so far has run on the GPU. */
  idle(): Promise<void> {
    return this.device.queue.onSubmittedWorkDone()
  }

  /** Prepares attention for the plan, encodes and submits the forward, and releases the plan once submitted. */
  private run(plan: LevelPlan, kernels: TreeAttention | undefined, batch: Parameters<Forward["step"]>[0]): Promise<Uint32Array> {
    checkDeviceAlive(this.device)
    const prepared = kernels?.prepare(plan)
    const attend: PassAttention = {
      inPass: (pass, _layer, buffers) => {
        if (kernels !== undefined) kernels.encodeInPass(pass, prepared!, buffers)
      }
    }
    let sampled: Promise<Uint32Array>
    try {
      // Encoding and submission happen before step's first await: the plan's buffers are queued by then.
      sampled = this.forward.step(batch, attend)
    } finally {
      prepared?.destroy()
    }
    return sampled.then(
      (ids) => {
        checkDeviceAlive(this.device)
        return ids
      },
      (e: unknown) => {
        checkDeviceAlive(this.device) // a read-back fails when the device is lost: say why
        throw e
      }
    )
  }
}
