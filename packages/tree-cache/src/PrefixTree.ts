/**
 * The prefix tree (radix trie over token ids) that decides where every
 * sequence's KV lives and which KV the sequences share. Modelled on SGLang's
 * radix_cache.py: nodes hold a run of tokens and the KV blocks of that run,
 * live sequences lock their path (lockRef counted up to the root), and
 * unlocked leaves are evicted least-recently-used first.
 *
 * Block layout (see LevelPlan.ts): every token sits at the slot of its
 * absolute position, `slot = position mod blockSize`, so a node starts at
 * `startSlot = (tokens on its ancestors) mod blockSize`; each block is owned
 * by exactly one node. A node of length L therefore owns
 * ⌈(startSlot + L) / blockSize⌉ blocks, and a child that starts inside a block
 * gets a fresh block whose first `startSlot` slots it never reads.
 */
import { Data } from "effect"
import type { BlockPool } from "./BlockPool.ts"
import { MinHeap } from "./MinHeap.ts"

/** a live sequence handle */
export type SeqId = number

export class UnknownSequence extends Data.TaggedError("UnknownSequence")<{
  readonly seq: SeqId
  readonly message: string
}> {
  constructor(seq: SeqId) {
    super({ seq, message: `sequence ${seq} is not live` })
  }
}

/**
 * One node of the trie. Only PrefixTree mutates it; everyone else reads.
 * Splitting a node keeps the object (and id) for the lower part and creates a
 * new node for the upper part, so a sequence's end node never moves.
 */
export class TreeNode {
  /** children keyed by their first token (the root's: by namespace and first token, see childKey) */
  readonly children = new Map<number, TreeNode>()
  /**
   * its key in its parent's children: childKey of its first token, or, for a
   * node whose first token was placed pending, that placeholder (negative)
   * until the token is known and no sibling holds its key (see resolvePending)
   */
  key = 0
  /** sequences in different namespaces never share KV (set on the root's children, inherited below) */
  namespace = 0
  /** live sequences (and explicit locks) whose path passes through this node */
  lockRef = 0
  /** logical clock of the last use of the path through this node */
  lastAccess = 0
  evicted = false
  /** scratch for planLevels: the level generation that last visited the node, and its index there */
  planMark = 0
  planIndex = 0

  constructor(
    readonly id: number,
    /** undefined only for the tree's root, which holds no tokens */
    public parent: TreeNode | undefined,
    public tokens: number[],
    /** block table: the node's token t lives at slot (startSlot + t) mod blockSize of blocks[⌊(startSlot + t) / blockSize⌋] */
    public blocks: number[],
    public startSlot: number
  ) {}

  get length(): number {
    return this.tokens.length
  }
}

/** A GPU block copy: dst[slot] = src[slot] for slot in [fromSlot, toSlot). */
export interface BlockCopy {
  readonly src: number
  readonly dst: number
  readonly fromSlot: number
  readonly toSlot: number
}

/**
 * What an insert or append did. Positions [newStart, length) are new: their KV
 * must be computed and written at (newBlocks[i], newSlots[i]) for position
 * newStart + i. Positions before newStart were already cached.
 *
 * `copies` must run on the GPU after every KV write scheduled earlier (a copy's
 * source may be a block whose KV an earlier placement asked for) and before any
 * attention that reads their destination.
 */
export interface Placement {
  readonly seq: SeqId
  readonly newStart: number
  /** the sequence's length after the operation */
  readonly length: number
  readonly newBlocks: Uint32Array
  readonly newSlots: Uint32Array
  readonly copies: ReadonlyArray<BlockCopy>
}

/** Longest cached prefix: `length` tokens, the last `inNode` of them inside `node` (the root when nothing matched). */
export interface MatchResult {
  readonly node: TreeNode
  readonly inNode: number
  readonly length: number
}

export interface SequenceView {
  readonly end: TreeNode
  readonly length: number
}

export interface TreeStats {
  readonly nodes: number
  readonly blockSize: number
  readonly blocksUsed: number
  readonly blocksFree: number
  readonly capacity: number
  /** blocks of unlocked nodes: what eviction could free */
  readonly evictableBlocks: number
  /** tokens held in the tree */
  readonly cachedTokens: number
  /** tokens whose KV serves more than one live sequence, counted once */
  readonly sharedTokens: number
  readonly liveSequences: number
}

interface Sequence {
  end: TreeNode
  length: number
  /** its last token was placed by appendPending and is not known yet */
  pending: boolean
}

/** Placeholders are negative, so no token id ever matches one (descend compares ids). */
const isPlaceholder = (token: number): boolean => token < 0

interface Descent {
  node: TreeNode
  /** absolute position of node's first token */
  nodeStart: number
  /** tokens matched inside node; node.length when the match ends on its boundary */
  inNode: number
  matched: number
}

interface HeapEntry {
  readonly key: number
  readonly node: TreeNode
}

export class PrefixTree {
  readonly blockSize: number
  /** the empty root (id -1); its children are the depth-0 nodes */
  readonly root: TreeNode
  private readonly byId = new Map<number, TreeNode>()
  private readonly seqs = new Map<SeqId, Sequence>()
  /**
   * Evictable leaves by (lastAccess, id). Entries go stale when a node is
   * locked, grows children or is touched again; stale ones are skipped or
   * re-keyed on pop rather than searched for on every change.
   */
  private readonly evictable = new MinHeap<HeapEntry>((a, b) =>
    a.key < b.key || (a.key === b.key && a.node.id < b.node.id)
  )
  private nextNodeId = 0
  private nextSeqId = 0
  private nextPlaceholder = -1
  private clock = 0

  constructor(readonly pool: BlockPool) {
    this.blockSize = pool.blockSize
    this.root = new TreeNode(-1, undefined, [], [], 0)
  }

  // ---- queries -------------------------------------------------------------

  /** Longest prefix of `tokens` held in the tree. Does not count as a use for LRU. */
  match(tokens: ArrayLike<number>, namespace = 0): MatchResult {
    const d = this.descend(this.root, 0, tokens, namespace)
    return { node: d.node, inNode: d.inNode, length: d.matched }
  }

  sequence(seq: SeqId): SequenceView {
    return this.get(seq)
  }

  isLive(seq: SeqId): boolean {
    return this.seqs.has(seq)
  }

  sequences(): IterableIterator<SeqId> {
    return this.seqs.keys()
  }

  lengthOf(seq: SeqId): number {
    return this.get(seq).length
  }

  /** the nodes of the sequence's path, root → leaf (the root itself excluded) */
  path(seq: SeqId): TreeNode[] {
    const out: TreeNode[] = []
    for (let n = this.get(seq).end; n !== this.root; n = n.parent!) out.push(n)
    return out.reverse()
  }

  tokensOf(seq: SeqId): number[] {
    const out: number[] = []
    for (const n of this.path(seq)) for (const t of n.tokens) out.push(t)
    return out
  }

  /** 0 for the root's children, −1 for the root */
  depth(node: TreeNode): number {
    let d = -1
    for (let n = node; n !== this.root; n = n.parent!) d++
    return d
  }

  /** where the KV of the sequence's token at `position` lives */
  slotOf(seq: SeqId, position: number): { block: number; slot: number } {
    const s = this.get(seq)
    if (!Number.isInteger(position) || position < 0 || position >= s.length) {
      throw new RangeError(`position ${position} outside sequence ${seq} of length ${s.length}`)
    }
    let n = s.end
    let start = s.length - n.length
    while (position < start) {
      n = n.parent!
      start -= n.length
    }
    const i = n.startSlot + position - start
    return { block: n.blocks[Math.floor(i / this.blockSize)]!, slot: i % this.blockSize }
  }

  /** (block, slot) of every position of the sequence, in order */
  slotsOf(seq: SeqId): { blocks: Uint32Array; slots: Uint32Array } {
    const length = this.get(seq).length
    const blocks = new Uint32Array(length)
    const slots = new Uint32Array(length)
    let p = 0
    for (const n of this.path(seq)) {
      for (let t = 0; t < n.length; t++, p++) {
        const i = n.startSlot + t
        blocks[p] = n.blocks[Math.floor(i / this.blockSize)]!
        slots[p] = i % this.blockSize
      }
    }
    return { blocks, slots }
  }

  node(id: number): TreeNode | undefined {
    return this.byId.get(id)
  }

  nodes(): IterableIterator<TreeNode> {
    return this.byId.values()
  }

  /** Blocks of the nodes no sequence or lock holds: what evict could free. One pass over the nodes, none over the sequences. */
  evictableBlocks(): number {
    let blocks = 0
    for (const n of this.byId.values()) if (n.lockRef === 0) blocks += n.blocks.length
    return blocks
  }

  stats(): TreeStats {
    let cachedTokens = 0
    for (const n of this.byId.values()) cachedTokens += n.length
    // Counted from the sequences, not lockRef: explicit locks are not sequences.
    const users = new Map<TreeNode, number>()
    for (const s of this.seqs.values()) {
      for (let n = s.end; n !== this.root; n = n.parent!) users.set(n, (users.get(n) ?? 0) + 1)
    }
    let sharedTokens = 0
    for (const [n, count] of users) if (count > 1) sharedTokens += n.length
    return {
      nodes: this.byId.size,
      blockSize: this.blockSize,
      blocksUsed: this.pool.used,
      blocksFree: this.pool.free,
      capacity: this.pool.capacity,
      evictableBlocks: this.evictableBlocks(),
      cachedTokens,
      sharedTokens,
      liveSequences: this.seqs.size
    }
  }

  // ---- sequences -----------------------------------------------------------

  /**
   * A new live sequence spelling `tokens`, sharing every cached prefix. The
   * tree splits where the sequence diverges or ends inside a node, and
   * allocates blocks for the tokens not yet cached (evicting LRU leaves when
   * short). Throws BlockPoolExhausted, with the tree's cache unchanged apart
   * from evictions, when even eviction cannot free enough.
   */
  insert(tokens: ArrayLike<number>, namespace = 0): Placement {
    const g = this.place(this.root, 0, tokens, undefined, namespace)
    const seq = this.nextSeqId++
    this.seqs.set(seq, { end: g.end, length: tokens.length, pending: false })
    return { seq, length: tokens.length, newStart: g.newStart, newBlocks: g.newBlocks, newSlots: g.newSlots, copies: g.copies }
  }

  /** A new live sequence with the same tokens as `seq` (one of n samples). Allocates nothing. */
  fork(seq: SeqId): SeqId {
    const s = this.settled(seq, "fork")
    const id = this.nextSeqId++
    this.seqs.set(id, { end: s.end, length: s.length, pending: false })
    this.incRef(s.end)
    this.touch(s.end)
    return id
  }

  /**
   * Appends tokens to a live sequence. Its leaf grows in place when no other
   * sequence or child uses it; otherwise the tokens follow (and share) a cached
   * child or start a new child node. Tokens that leave a cached leaf no one
   * holds midway cut that leaf where they leave it and grow it from there
   * (its cached tail is dropped, not split off).
   */
  append(seq: SeqId, tokens: ArrayLike<number>): Placement {
    const s = this.settled(seq, "append to")
    return this.grow(s, seq, tokens)
  }

  /**
   * Places one token not known yet at the end of a live sequence: the slot its
   * KV goes to is fixed now (a decode step that samples the token and writes
   * its KV in the next step's forward can be planned before the first one's
   * result is read back). The token is a placeholder no match ever follows,
   * so the sequence gets a slot of its own; resolvePending names the token.
   */
  appendPending(seq: SeqId): Placement {
    const s = this.settled(seq, "append to")
    const placement = this.grow(s, seq, [this.nextPlaceholder--])
    s.pending = true
    return placement
  }

  /**
   * Names the token appendPending placed. Where the token starts a node and a
   * sibling already starts with it (another sample drew the same token, or a
   * cached one did), the sequence moves onto that sibling as append would
   * have placed it: onto a one-token sibling, or a cached leaf no one holds
   * (cut after the token), and its own node leaves the tree. A longer sibling
   * that is held could only be shared by a split and a copy: the node stays
   * private under its placeholder key instead (its KV is correct; later
   * matches do not find it).
   */
  resolvePending(seq: SeqId, token: number): void {
    const s = this.get(seq)
    if (!s.pending) throw new RangeError(`sequence ${seq} has no pending token`)
    if (!Number.isInteger(token) || isPlaceholder(token)) throw new RangeError(`token ${token} is not a token id`)
    const node = s.end
    node.tokens[node.length - 1] = token
    s.pending = false
    if (node.length > 1) return
    const parent = node.parent!
    const key = this.childKey(parent, node.namespace, token)
    const sibling = parent.children.get(key)
    if (sibling === undefined) {
      parent.children.delete(node.key)
      parent.children.set(key, node)
      node.key = key
      return
    }
    const unheldLeaf = sibling.lockRef === 0 && sibling.children.size === 0
    if (sibling.length > 1 && !unheldLeaf) return
    if (sibling.length > 1) this.truncate(sibling, 1)
    // The step in flight still writes the node's slot; its block is only reused by work submitted later.
    this.incRef(sibling)
    this.touch(sibling)
    this.decRef(node)
    this.remove(node)
    s.end = sibling
  }

  private grow(s: Sequence, seq: SeqId, tokens: ArrayLike<number>): Placement {
    const old = s.end
    const g = this.place(old, s.length, tokens, old, old.namespace)
    this.decRef(old)
    s.end = g.end
    s.length += tokens.length
    return { seq, length: s.length, newStart: g.newStart, newBlocks: g.newBlocks, newSlots: g.newSlots, copies: g.copies }
  }

  /**
   * Ends a sequence. Its nodes stay cached (evictable once no one else locks
   * them) — all but the tokens at positions ≥ `written`. A sequence stopped
   * between placing tokens and the forward that writes their KV (an abort, a
   * failed step) passes how many of its tokens have KV: the rest are dropped
   * from the tree and their blocks freed, so that no later match trusts KV
   * that was never written. Tokens another live sequence still holds stay: that
   * holder writes them, or drops them when it ends the same way.
   */
  release(seq: SeqId, written?: number): void {
    const s = this.get(seq)
    let keep = written ?? s.length
    if (!Number.isInteger(keep) || keep < 0 || keep > s.length) {
      throw new RangeError(`written ${keep} outside sequence ${seq} of length ${s.length}`)
    }
    // A token never named cannot stay cached: nothing could match it, and its id is unknown.
    if (s.pending) keep = Math.min(keep, s.length - 1)
    this.seqs.delete(seq)
    this.touch(s.end)
    this.decRef(s.end)
    if (keep < s.length) this.dropUnwritten(s.end, s.length, keep)
  }

  /** Pins the path root → node against eviction and in-place growth (e.g. a shared system prompt). */
  lock(node: TreeNode): void {
    this.own(node)
    this.incRef(node)
    this.touch(node)
  }

  unlock(node: TreeNode): void {
    this.own(node)
    this.touch(node)
    this.decRef(node)
  }

  // ---- eviction ------------------------------------------------------------

  /**
   * Evicts least-recently-used unlocked leaves until at least `blocks` blocks
   * were freed or nothing is evictable; returns the blocks freed. Evicting a
   * leaf can make its parent an evictable leaf. Locked nodes are never touched.
   */
  evict(blocks: number): number {
    let freed = 0
    while (freed < blocks) {
      const e = this.evictable.pop()
      if (e === undefined) break
      const n = e.node
      if (n.evicted || n.lockRef > 0 || n.children.size > 0) continue
      if (e.key !== n.lastAccess) {
        this.evictable.push({ key: n.lastAccess, node: n })
        continue
      }
      freed += this.remove(n)
    }
    return freed
  }

  // ---- internals -----------------------------------------------------------

  private get(seq: SeqId): Sequence {
    const s = this.seqs.get(seq)
    if (s === undefined) throw new UnknownSequence(seq)
    return s
  }

  /** A live sequence whose tokens are all known: only such a one grows or forks. */
  private settled(seq: SeqId, what: string): Sequence {
    const s = this.get(seq)
    if (s.pending) throw new RangeError(`cannot ${what} sequence ${seq}: its last token is pending`)
    return s
  }

  /** Below the root a child is keyed by its first token; the root's children also by namespace. */
  private childKey(parent: TreeNode, namespace: number, token: number): number {
    return parent === this.root ? namespace * 2 ** 32 + token : token
  }

  /** A new node's key: a placeholder is its own key (unique, never a token's), else childKey. */
  private keyOf(parent: TreeNode, first: number, namespace = 0): number {
    return isPlaceholder(first) ? first : this.childKey(parent, namespace, first)
  }

  private own(node: TreeNode): void {
    if (node !== this.root && this.byId.get(node.id) !== node) throw new RangeError(`node ${node.id} is not in this tree`)
  }

  /** Follows `tokens` down from `from`, whose last token sits at position fromEnd − 1. */
  private descend(from: TreeNode, fromEnd: number, tokens: ArrayLike<number>, namespace: number): Descent {
    let node = from
    let nodeStart = fromEnd - from.length
    let inNode = from.length
    let i = 0
    while (i < tokens.length) {
      const child = node.children.get(this.childKey(node, namespace, tokens[i]!))
      if (child === undefined) break
      const ct = child.tokens
      let j = 1 // the first token matched as the key
      i++
      while (j < ct.length && i < tokens.length && ct[j] === tokens[i]) {
        j++
        i++
      }
      nodeStart += node.length
      node = child
      inNode = j
      if (j < ct.length) break
    }
    return { node, nodeStart, inNode, matched: i }
  }

  /**
   * The shared core of insert and append: match `tokens` below `from`, split
   * where the match ends inside a node, put the rest in place (growing the
   * last node when allowed, else a new child) and lock the new end. `own` is
   * the caller's current end node, whose lock is its own (append).
   */
  private place(
    from: TreeNode,
    fromEnd: number,
    tokens: ArrayLike<number>,
    own: TreeNode | undefined,
    namespace: number
  ): { end: TreeNode; newStart: number; newBlocks: Uint32Array; newSlots: Uint32Array; copies: BlockCopy[] } {
    const bs = this.blockSize
    const { node, nodeStart, inNode, matched } = this.descend(from, fromEnd, tokens, namespace)
    if (own !== undefined && inNode < node.length && node.children.size === 0 && node.lockRef === 0) {
      // A sequence growing into a cached leaf no one holds (a sample retracing an earlier one's tokens)
      // takes the leaf over: splitting it would cost a copy and a block per appended token.
      this.truncate(node, inNode)
    }
    const splitInside = inNode < node.length
    const pos = nodeStart + inNode // absolute position of the first unmatched token
    const rest = tokens.length - matched
    const r = pos % bs
    // A split inside a block costs the upper part its own copy of that block.
    const copyBlocks = splitInside && r !== 0 ? 1 : 0
    const grow =
      !splitInside && rest > 0 && node !== this.root && node.children.size === 0 &&
      node.lockRef === (node === own ? 1 : 0)
    const tailBlocks = rest === 0 ? 0 : Math.ceil((r + rest) / bs) - (grow && r !== 0 ? 1 : 0)

    // The matched node must survive the eviction that makes room.
    this.incRef(node)
    let fresh: number[]
    try {
      fresh = this.allocate(copyBlocks + tailBlocks)
    } catch (e) {
      this.decRef(node)
      throw e
    }

    const copies: BlockCopy[] = []
    let end = node
    if (splitInside) end = this.split(node, inNode, copyBlocks ? fresh[0]! : -1, copies)
    const tail = fresh.slice(copyBlocks)
    let written = end
    let writtenFrom = 0
    if (rest > 0) {
      const newTokens = new Array<number>(rest)
      for (let i = 0; i < rest; i++) newTokens[i] = tokens[matched + i]!
      if (grow) {
        writtenFrom = end.length
        for (const t of newTokens) end.tokens.push(t)
        for (const b of tail) end.blocks.push(b)
      } else {
        end = this.newNode(end, newTokens, r, tail, namespace)
      }
      written = end
    }
    this.incRef(end)
    this.decRef(node)
    this.touch(end)

    const newBlocks = new Uint32Array(rest)
    const newSlots = new Uint32Array(rest)
    for (let i = 0; i < rest; i++) {
      const k = written.startSlot + writtenFrom + i
      newBlocks[i] = written.blocks[Math.floor(k / bs)]!
      newSlots[i] = k % bs
    }
    return { end, newStart: pos, newBlocks, newSlots, copies }
  }

  /**
   * Splits `node` after its first `at` tokens. The node object keeps the lower
   * part and the blocks from the one holding the split point on; a new node
   * takes the upper part. When the split point is inside a block, the upper
   * part gets `copyBlock` and the copy of that block's slots it still needs.
   */
  private split(node: TreeNode, at: number, copyBlock: number, copies: BlockCopy[]): TreeNode {
    const bs = this.blockSize
    const cut = node.startSlot + at
    const q = Math.floor(cut / bs)
    const r = cut % bs
    const upperBlocks = node.blocks.slice(0, q)
    if (r !== 0) {
      upperBlocks.push(copyBlock)
      copies.push({ src: node.blocks[q]!, dst: copyBlock, fromSlot: q === 0 ? node.startSlot : 0, toSlot: r })
    }
    const upper = this.newNode(node.parent!, node.tokens.slice(0, at), node.startSlot, upperBlocks, node.namespace, node.key)
    upper.lockRef = node.lockRef
    upper.lastAccess = node.lastAccess
    node.tokens = node.tokens.slice(at)
    node.blocks = node.blocks.slice(q)
    node.startSlot = r
    node.parent = upper
    node.key = this.keyOf(upper, node.tokens[0]!)
    upper.children.set(node.key, node)
    return upper
  }

  /** A new child; `key` replaces (in the parent's map) the key of the node it splits off, else its first token's. */
  private newNode(parent: TreeNode, tokens: number[], startSlot: number, blocks: number[], namespace: number, key?: number): TreeNode {
    const n = new TreeNode(this.nextNodeId++, parent, tokens, blocks, startSlot)
    n.namespace = namespace
    n.key = key ?? this.keyOf(parent, tokens[0]!, namespace)
    parent.children.set(n.key, n)
    this.byId.set(n.id, n)
    return n
  }

  /** Cuts an unlocked leaf to its first `length` tokens, freeing the blocks past them. */
  private truncate(node: TreeNode, length: number): void {
    node.tokens.length = length
    for (const b of node.blocks.splice(Math.ceil((node.startSlot + length) / this.blockSize))) this.pool.release(b)
  }

  /**
   * Drops positions ≥ keep from the path ending at `end` (whose last token is
   * at position endLength − 1), bottom up, while its nodes are unlocked leaves.
   */
  private dropUnwritten(end: TreeNode, endLength: number, keep: number): void {
    let n = end
    let nodeEnd = endLength
    while (n !== this.root && nodeEnd > keep && n.lockRef === 0 && n.children.size === 0) {
      const start = nodeEnd - n.length
      if (start < keep) {
        // The node keeps its written head.
        this.truncate(n, keep - start)
        return
      }
      const parent = n.parent!
      this.remove(n)
      n = parent
      nodeEnd = start
    }
  }

  /** n blocks, evicting first when the pool is short */
  private allocate(n: number): number[] {
    if (n === 0) return []
    if (this.pool.free < n) this.evict(n - this.pool.free)
    return this.pool.allocate(n)
  }

  /** removes an unlocked leaf; returns the blocks that returned to the pool */
  private remove(n: TreeNode): number {
    const parent = n.parent!
    parent.children.delete(n.key)
    this.byId.delete(n.id)
    n.evicted = true
    let freed = 0
    for (const b of n.blocks) if (this.pool.release(b)) freed++
    if (parent !== this.root && parent.lockRef === 0 && parent.children.size === 0) this.pushEvictable(parent)
    return freed
  }

  private incRef(node: TreeNode): void {
    for (let n = node; n !== this.root; n = n.parent!) n.lockRef++
  }

  private decRef(node: TreeNode): void {
    for (let n = node; n !== this.root; n = n.parent!) {
      if (n.lockRef === 0) throw new Error(`lockRef of node ${n.id} would drop below zero`)
      if (--n.lockRef === 0 && n.children.size === 0) this.pushEvictable(n)
    }
  }

  private touch(node: TreeNode): void {
    const t = ++this.clock
    for (let n = node; n !== this.root; n = n.parent!) n.lastAccess = t
  }

  private pushEvictable(n: TreeNode): void {
    this.evictable.push({ key: n.lastAccess, node: n })
    // Stale entries pile up under churn; rebuild from the live leaves when they dominate.
    if (this.evictable.size > 2 * this.byId.size + 64) {
      const fresh: HeapEntry[] = []
      for (const m of this.byId.values()) {
        if (m.lockRef === 0 && m.children.size === 0) fresh.push({ key: m.lastAccess, node: m })
      }
      this.evictable.reset(fresh)
    }
  }
}
