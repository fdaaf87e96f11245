/**
 * The f16 rounding of the KV cache (kvStorage.ts) against a definition
 * written independently: the nearest of all 63,488 finite f16 values, ties
 * to the one with an even last bit, ±∞ from 65520 (halfway past the largest)
 * on. The WGSL twin is checked against this code bit for bit by the KV append
 * test in model-kernels.test.ts.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { f16BitsToF32, f32ToF16Bits, packF16, roundToF16, unpackF16 } from "../src/attention/kvStorage.ts"
import { shardBytesFor } from "../src/attention/poolLayout.ts"

/** Every finite non-negative f16 as (value, bits), ascending; values from the definition (1 + m/1024)·2^(e−15). */
const finite: ReadonlyArray<{ readonly value: number; readonly bits: number }> = Array.from({ length: 0x7c00 }, (_, bits) => {
  const e = bits >> 10
  const m = bits & 0x3ff
  return { value: e === 0 ? (m / 1024) * 2 ** -14 : (1 + m / 1024) * 2 ** (e - 15), bits }
})

const nearestBits = (x: number): number => {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  if (a >= 65520) return sign | 0x7c00
  let lo = 0
  let hi = finite.length - 1
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (finite[mid]!.value <= a) lo = mid
    else hi = mid
  }
  const below = finite[lo]!
  const above = finite[hi]!
  if (a <= below.value) return sign | below.bits
  const dBelow = a - below.value
  const dAbove = above.value - a
  const pick = dBelow < dAbove ? below : dAbove < dBelow ? above : (below.bits & 1) === 0 ? below : above
  return sign | pick.bits
}

const fromBits = (bits: number): number => new Float32Array(Uint32Array.of(bits >>> 0).buffer)[0]!

describe("f16 rounding of KV values", () => {
  it("every f16 value converts to itself and back", () => {
    const wrong = finite.filter(({ value, bits }) =>
      f32ToF16Bits(value) !== bits || f32ToF16Bits(-value) !== (bits | 0x8000) || f16BitsToF32(bits) !== value)
    expect(wrong.slice(0, 5)).toEqual([])
  })

  it("rounds any f32 to the nearest f16, ties to even, ±∞ past the range", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        const x = fromBits(bits)
        if (Number.isNaN(x)) return
        expect(f32ToF16Bits(x)).toBe(nearestBits(x))
      }),
      { numRuns: 20_000 }
    )
  })

  it("rounds midpoints and their f32 neighbours between consecutive f16 values correctly", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x7bfe }), fc.constantFrom(-1, 0, 1), fc.boolean(), (bits, nudge, negative) => {
        // the midpoint of two neighbouring f16 values is an f32 (it needs 12 significant bits); nudge it by one f32 ulp
        const mid = new Float32Array([(finite[bits]!.value + finite[bits + 1]!.value) / 2])
        const u = new Uint32Array(mid.buffer)
        u[0] = u[0]! + nudge
        const x = negative ? -mid[0]! : mid[0]!
        expect(f32ToF16Bits(x)).toBe(nearestBits(x))
      }),
      { numRuns: 5_000 }
    )
  })

  it("keeps NaN a NaN and infinities infinite", () => {
    expect(Number.isNaN(roundToF16(NaN))).toBe(true)
    expect(roundToF16(Infinity)).toBe(Infinity)
    expect(roundToF16(-Infinity)).toBe(-Infinity)
    expect(roundToF16(65519.99)).toBe(65504)
    expect(roundToF16(65520)).toBe(Infinity)
  })

  it("packs two values per word, element 2k in the low half, and refuses an odd count", () => {
    const words = packF16([1, -2, 0.5, 65504])
    expect(Array.from(words)).toEqual([0xc0003c00, 0x7bff3800])
    expect(Array.from(unpackF16(words))).toEqual([1, -2, 0.5, 65504])
    expect(() => packF16([1, 2, 3])).toThrow(/even/)
  })

  it("pool shards take half the bytes at f16, padded to 256", () => {
    expect(shardBytesFor(100, 2, 64, "f16")).toBe(Math.ceil((100 * 2 * 64 * 2) / 256) * 256)
    expect(shardBytesFor(100, 2, 64, "f32")).toBe(2 * shardBytesFor(100, 2, 64, "f16"))
    expect(shardBytesFor(3, 1, 8, "f16")).toBe(256)
  })
})
