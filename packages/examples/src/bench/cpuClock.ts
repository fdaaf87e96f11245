/**
 * CPU time of the calling thread, in milliseconds. On Linux it is read from
 * /proc/thread-self/schedstat (nanoseconds of run time, a few µs a read, the
 * file kept open); elsewhere it falls back to the whole process's CPU time
 * (process.cpuUsage), which also counts other threads — a software adapter's
 * among them — and says so in `source`.
 */
import { closeSync, openSync, readSync } from "node:fs"

export class CpuClock {
  readonly source: "thread" | "process"
  private readonly fd: number | undefined
  private readonly text = Buffer.alloc(128)

  constructor() {
    this.fd = openThreadStat()
    this.source = this.fd === undefined ? "process" : "thread"
  }

  ms(): number {
    if (this.fd === undefined) {
      const { user, system } = process.cpuUsage()
      return (user + system) / 1000
    }
    // a read at offset 0 makes the kernel write the figures anew
    const n = readSync(this.fd, this.text, 0, this.text.length, 0)
    const line = this.text.toString("latin1", 0, n)
    return Number(line.slice(0, line.indexOf(" "))) / 1e6
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
  }
}

const openThreadStat = (): number | undefined => {
  try {
    return openSync("/proc/thread-self/schedstat", "r")
  } catch {
    return undefined
  }
}
