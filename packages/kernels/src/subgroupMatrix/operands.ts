/** Operands of the probes: seeded random values, and how they go to the device (f16 packed two to a word, or f32). */
import { packWeights, roundWeights } from "../model/weightType.ts"

/** Uniform in [−1, 1), from a linear congruential generator: the same values on every run. */
export const randomValues = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s / 2 ** 32) * 2 - 1
  })
}

/** Operands of a timing: one random block of f16 values repeated (values do not change a matrix unit's speed). */
export const repeatedValues = (n: number, seed: number): Float32Array => {
  const block = roundWeights("f16", randomValues(65536, seed))
  const out = new Float32Array(n)
  for (let i = 0; i < n; i += block.length) out.set(block.subarray(0, Math.min(block.length, n - i)), i)
  return out
}

/** `values` into `buffer`, as f16 (already representable) or f32. */
export const writeOperand = (device: GPUDevice, buffer: GPUBuffer, values: Float32Array, f16: boolean): void => {
  const data = f16 ? packWeights("f16", values) : values
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
}
