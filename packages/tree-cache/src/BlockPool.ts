import { Data } from "effect"

/**
 * A block allocation that could not be satisfied. All-or-nothing: nothing was
 * allocated. `free` is what the pool held at the time (after any eviction the
 * caller attempted).
 */
export class BlockPoolExhausted extends Data.TaggedError("BlockPoolExhausted")<{
  readonly asked: number
  readonly free: number
  readonly capacity: number
  readonly message: string
}> {
  constructor(fields: { readonly asked: number; readonly free: number; readonly capacity: number }) {
    super({
      ...fields,
      message: `asked for ${fields.asked} KV blocks, ${fields.free} free of ${fields.capacity}`
    })
  }
}

export interface BlockPoolStats {
  readonly blockSize: number
  readonly capacity: number
  readonly used: number
  readonly free: number
}

/**
 * A fixed number of KV blocks of `blockSize` tokens each, named 0..capacity-1
 * (the index into the GPU block arrays). Blocks are reference counted: a block
 * returns to the free list when its last reference is released, so the engine
 * may retain a block (e.g. while a copy is in flight) beyond its owner's life.
 */
export class BlockPool {
  readonly capacity: number
  readonly blockSize: number
  private readonly refs: Uint32Array
  /** stack of free blocks; the top is handed out first */
  private readonly freeStack: Uint32Array
  private freeCount: number

  constructor(options: { readonly numBlocks: number; readonly blockSize: number }) {
    const { numBlocks, blockSize } = options
    if (!Number.isInteger(numBlocks) || numBlocks < 0) throw new RangeError(`numBlocks must be a non-negative integer, got ${numBlocks}`)
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`)
    this.capacity = numBlocks
    this.blockSize = blockSize
    this.refs = new Uint32Array(numBlocks)
    this.freeStack = new Uint32Array(numBlocks)
    // Pushed in reverse so that a fresh pool hands out 0, 1, 2, …: predictable ids.
    for (let i = 0; i < numBlocks; i++) this.freeStack[i] = numBlocks - 1 - i
    this.freeCount = numBlocks
  }

  get free(): number {
    return this.freeCount
  }

  get used(): number {
    return this.capacity - this.freeCount
  }

  /** `n` blocks, each with one reference; throws BlockPoolExhausted (allocating nothing) if fewer are free. */
  allocate(n: number): number[] {
    if (n > this.freeCount) throw new BlockPoolExhausted({ asked: n, free: this.freeCount, capacity: this.capacity })
    const out = new Array<number>(n)
    for (let i = 0; i < n; i++) {
      const b = this.freeStack[--this.freeCount]!
      this.refs[b] = 1
      out[i] = b
    }
    return out
  }

  /** adds a reference to an allocated block */
  retain(block: number): void {
    this.check(block)
    this.refs[block]!++
  }

  /** drops a reference; returns true when that freed the block */
  release(block: number): boolean {
    this.check(block)
    const left = --this.refs[block]!
    if (left > 0) return false
    this.freeStack[this.freeCount++] = block
    return true
  }

  refCount(block: number): number {
    return this.refs[block] ?? 0
  }

  stats(): BlockPoolStats {
    return { blockSize: this.blockSize, capacity: this.capacity, used: this.used, free: this.freeCount }
  }

  private check(block: number): void {
    if (!(this.refs[block]! > 0)) throw new RangeError(`block ${block} is not allocated`)
  }
}
