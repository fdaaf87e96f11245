/**
 * Bytes written into a GPU buffer in order, in pieces of any length: a
 * checkpoint's tensors as read from disk, where a 16-bit tensor of odd length
 * ends mid-word and the next one (up after gate in gateUp) starts there.
 * queue.writeBuffer takes only offsets and sizes that are multiples of 4, so
 * each piece's whole words go straight from its bytes, and its last 1–3 bytes
 * wait for the next piece to fill their word; end() pads the last word with
 * zeros. writeBuffer copies its data when called, so pieces may be reused.
 */
export class BufferStream {
  private at: number
  private readonly carry = new Uint8Array(4)
  private carried = 0

  constructor(private readonly device: GPUDevice, private readonly buffer: GPUBuffer, byteOffset = 0) {
    if (byteOffset % 4 !== 0) throw new RangeError(`BufferStream: byteOffset ${byteOffset} is not a multiple of 4`)
    this.at = byteOffset
  }

  push(bytes: Uint8Array): void {
    let from = 0
    if (this.carried > 0) {
      from = Math.min(4 - this.carried, bytes.byteLength)
      this.carry.set(bytes.subarray(0, from), this.carried)
      this.carried += from
      if (this.carried < 4) return
      this.flushCarry()
    }
    const rest = bytes.byteLength - from
    const whole = rest - (rest % 4)
    if (whole > 0) {
      this.device.queue.writeBuffer(this.buffer, this.at, bytes, from, whole)
      this.at += whole
    }
    this.carry.set(bytes.subarray(from + whole), 0)
    this.carried = rest - whole
  }

  /** Writes what is carried, padded with zeros to a whole word. */
  end(): void {
    if (this.carried === 0) return
    this.carry.fill(0, this.carried)
    this.flushCarry()
  }

  private flushCarry(): void {
    this.device.queue.writeBuffer(this.buffer, this.at, this.carry, 0, 4)
    this.at += 4
    this.carried = 0
  }
}
