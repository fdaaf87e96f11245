/**
 * The forward's inputs for one decode step, from the rows the scheduler
 * gives: each row's token (or the row of the step in flight whose sampled id
 * feeds it), its position, the slot its KV goes to and its sampling.
 *
 * A slot's KV is written once: a row whose token already has KV (a prompt's
 * last token, prefilled) or whose slot an earlier row of the step claimed
 * (forks that sampled the same token share the trie node) gets NO_WRITE.
 *
 * It runs every step, so the claims are stamps in an array kept across steps
 * (one per KV slot, a step's claims told from older ones by the step's
 * number), not a set built anew. The arrays it returns belong to the step:
 * the scheduler keeps the positions until the step is read back, which with
 * overlap is after the next step is built.
 */
import { NO_FEED, type SamplingParams } from "@canopy/kernels"
import type { PrefixTree, SeqId } from "@canopy/tree-cache"
import type { ForwardBatch } from "../model/forward.ts"

/**
 * Rows whose KV is already cached, or written by another row of the same step,
 * get this block: the append kernel skips them, so a slot's KV is written once.
 */
export const NO_WRITE = 0xffffffff

export interface DecodeRow {
  readonly seq: SeqId
  /** the input token: the sample's newest (its KV is written by this step unless `written` covers it) */
  readonly token: number
  /** instead of `token`: the row of the previous decode step whose sampled id is the input, fed on the GPU */
  readonly feed?: number
  /** how many of the sequence's tokens already have KV */
  readonly written: number
  readonly sampling: SamplingParams
}

export interface DecodeBatch extends ForwardBatch {
  /** each row's sequence, in row order: the plan's query rows */
  readonly seqs: ReadonlyArray<SeqId>
}

export class DecodeBatchBuilder {
  /** per KV slot (block · blockSize + slot): the number of the last build that claimed it */
  private readonly claims: Uint32Array
  private build = 0

  constructor(private readonly tree: PrefixTree) {
    this.claims = new Uint32Array(tree.pool.capacity * tree.blockSize)
  }

  /** The inputs of a step over `rows`, every row a live sequence of the tree. */
  inputs(rows: ReadonlyArray<DecodeRow>): DecodeBatch {
    const { tree, claims } = this
    const blockSize = tree.blockSize
    const n = rows.length
    const tokens = new Uint32Array(n)
    const positions = new Uint32Array(n)
    const slots = new Uint32Array(2 * n)
    const logitRows = new Uint32Array(n)
    const sampling = new Array<SamplingParams>(n)
    const seqs = new Array<SeqId>(n)
    const feed = new Uint32Array(n).fill(NO_FEED)
    let fed = false
    const stamp = this.nextStamp()
    for (let r = 0; r < n; r++) {
      const row = rows[r]!
      const position = tree.lengthOf(row.seq) - 1
      const { block, slot } = tree.slotOf(row.seq, position)
      const key = block * blockSize + slot
      tokens[r] = row.token
      positions[r] = position
      slots[2 * r] = row.written > position || claims[key] === stamp ? NO_WRITE : block
      slots[2 * r + 1] = slot
      claims[key] = stamp
      logitRows[r] = r
      sampling[r] = row.sampling
      seqs[r] = row.seq
      if (row.feed !== undefined) {
        feed[r] = row.feed
        fed = true
      }
    }
    return { tokens, positions, slots, logitRows, sampling, seqs, ...(fed ? { feed } : {}) }
  }

  /** This build's stamp; when the count wraps, the claims start over. */
  private nextStamp(): number {
    if (this.build === 0xffffffff) {
      this.claims.fill(0)
      this.build = 0
    }
    return ++this.build
  }
}
