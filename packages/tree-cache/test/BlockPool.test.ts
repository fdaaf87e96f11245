import { describe, expect, it } from "vitest"
import { BlockPool, BlockPoolExhausted } from "../src/BlockPool.ts"

describe("BlockPool", () => {
  it("hands out distinct blocks in ascending order and counts them", () => {
    const pool = new BlockPool({ numBlocks: 5, blockSize: 4 })
    expect(pool.allocate(3)).toEqual([0, 1, 2])
    expect(pool.stats()).toEqual({ blockSize: 4, capacity: 5, used: 3, free: 2 })
    expect(pool.allocate(0)).toEqual([])
    expect(pool.allocate(2)).toEqual([3, 4])
    expect(pool.free).toBe(0)
  })

  it("allocates all or nothing, and the error carries the numbers", () => {
    const pool = new BlockPool({ numBlocks: 4, blockSize: 2 })
    pool.allocate(3)
    let caught: unknown
    try {
      pool.allocate(2)
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(BlockPoolExhausted)
    const err = caught as BlockPoolExhausted
    expect(err._tag).toBe("BlockPoolExhausted")
    expect([err.asked, err.free, err.capacity]).toEqual([2, 1, 4])
    expect(err.message).toBe("asked for 2 KV blocks, 1 free of 4")
    expect(pool.free).toBe(1)
    expect(pool.allocate(1)).toEqual([3])
  })

  it("frees a block when its last reference is released, and reuses it first", () => {
    const pool = new BlockPool({ numBlocks: 3, blockSize: 1 })
    const [a, b] = pool.allocate(2) as [number, number]
    pool.retain(a)
    expect(pool.refCount(a)).toBe(2)
    expect(pool.release(a)).toBe(false)
    expect(pool.used).toBe(2)
    expect(pool.release(a)).toBe(true)
    expect(pool.refCount(a)).toBe(0)
    expect(pool.used).toBe(1)
    expect(pool.allocate(1)).toEqual([a])
    expect(pool.release(b)).toBe(true)
  })

  it("rejects releasing or retaining a free block", () => {
    const pool = new BlockPool({ numBlocks: 2, blockSize: 1 })
    expect(() => pool.release(0)).toThrow(RangeError)
    expect(() => pool.retain(1)).toThrow(RangeError)
    expect(() => pool.release(7)).toThrow(RangeError)
    expect(() => new BlockPool({ numBlocks: 2, blockSize: 0 })).toThrow(RangeError)
  })
})
