/** A binary min-heap ordered by `less`. */
export class MinHeap<T> {
  private items: T[] = []

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length
  }

  push(item: T): void {
    const a = this.items
    a.push(item)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(a[i]!, a[p]!)) break
      ;[a[i], a[p]] = [a[p]!, a[i]!]
      i = p
    }
  }

  pop(): T | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      a[0] = last
      this.siftDown(0)
    }
    return top
  }

  /** replaces the contents with `items` in O(n) */
  reset(items: T[]): void {
    this.items = items
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i)
  }

  private siftDown(i: number): void {
    const a = this.items
    const n = a.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.less(a[l]!, a[m]!)) m = l
      if (r < n && this.less(a[r]!, a[m]!)) m = r
      if (m === i) return
      ;[a[i], a[m]] = [a[m]!, a[i]!]
      i = m
    }
  }
}
