/**
 * The WebGPU calls of a step's compute passes, recorded as the step encodes
 * them and replayed alone: what encoding the same dispatches costs with
 * nothing of Canopy's around them (no planning, no caches, no checks). The
 * step benchmark sets it beside the step's host time, as the floor the
 * WebGPU binding itself puts under any step of that many dispatches.
 *
 * The same calls, each dispatch with an empty grid, are also submitted: the
 * host cost of the submit itself, which a finished, unsubmitted encoder
 * leaves out.
 *
 * Recording goes through a stand-in encoder whose passes pass every call on,
 * so the recorded step runs as any other (it is not a timed one: the
 * stand-in's own work would count).
 */

type PassCall =
  | { readonly kind: "pipeline"; readonly pipeline: GPUComputePipeline }
  | { readonly kind: "group"; readonly index: number; readonly group: GPUBindGroup | null }
  | { readonly kind: "dispatch"; readonly x: number; readonly y: number; readonly z: number }

export interface ReplayTime {
  /** process CPU ms from the encoder's creation to its finish */
  readonly cpuMs: number
  readonly wallMs: number
}

/** CPU time this process has used, in ms (user and system, every thread: a software adapter's included). */
export const cpuMs = (): number => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

export class RecordedCalls {
  /** one list of calls per compute pass, in order */
  private readonly passes: Array<Array<PassCall>> = []

  get dispatches(): number {
    return this.passes.reduce((n, calls) => n + calls.filter((c) => c.kind === "dispatch").length, 0)
  }

  /** `encoder`, with each compute pass it begins recorded into this object as the calls go on to it. */
  recording(encoder: GPUCommandEncoder): GPUCommandEncoder {
    const begin = (descriptor?: GPUComputePassDescriptor): GPUComputePassEncoder => {
      const calls: Array<PassCall> = []
      this.passes.push(calls)
      return recordingPass(encoder.beginComputePass(descriptor), calls)
    }
    return new Proxy(encoder, {
      get: (target, key) => (key === "beginComputePass" ? begin : bound(target, key))
    })
  }

  /** Encodes the recorded passes into a new encoder and finishes it, unsubmitted: the time it took. */
  replay(device: GPUDevice): ReplayTime {
    const cpu0 = cpuMs()
    const t0 = performance.now()
    this.encode(device, false)
    return { cpuMs: cpuMs() - cpu0, wallMs: performance.now() - t0 }
  }

  /**
   * CPU ms of submitting the recorded passes, each dispatch with an empty grid
   * (Dawn warns once about those): what a submit costs the host for the
   * step's dispatches (the backend records its own commands there, with
   * every dispatch's barriers), with no GPU work started by it.
   */
  async submitAlone(device: GPUDevice): Promise<number> {
    const commands = this.encode(device, true)
    const cpu0 = cpuMs()
    device.queue.submit([commands])
    const cpu = cpuMs() - cpu0
    await device.queue.onSubmittedWorkDone()
    return cpu
  }

  private encode(device: GPUDevice, emptyGrids: boolean): GPUCommandBuffer {
    const encoder = device.createCommandEncoder({ label: "recorded calls" })
    for (const calls of this.passes) {
      const pass = encoder.beginComputePass()
      for (const c of calls) {
        if (c.kind === "pipeline") pass.setPipeline(c.pipeline)
        else if (c.kind === "group") pass.setBindGroup(c.index, c.group)
        else if (emptyGrids) pass.dispatchWorkgroups(0)
        else pass.dispatchWorkgroups(c.x, c.y, c.z)
      }
      pass.end()
    }
    return encoder.finish()
  }
}

const bound = (target: object, key: string | symbol): unknown => {
  const value: unknown = Reflect.get(target, key)
  return typeof value === "function" ? value.bind(target) : value
}

/** A pass that records its pipelines, bind groups (without dynamic offsets) and dispatches, then makes each call. */
const recordingPass = (pass: GPUComputePassEncoder, calls: Array<PassCall>): GPUComputePassEncoder => {
  const record: Partial<GPUComputePassEncoder> = {
    setPipeline: (pipeline) => {
      calls.push({ kind: "pipeline", pipeline })
      pass.setPipeline(pipeline)
    },
    setBindGroup: ((index: number, group: GPUBindGroup | null, offsets?: Iterable<number>) => {
      if (offsets !== undefined && [...offsets].length > 0) throw new Error("recorded calls: dynamic offsets are not recorded")
      calls.push({ kind: "group", index, group })
      pass.setBindGroup(index, group)
    }) as GPUComputePassEncoder["setBindGroup"],
    dispatchWorkgroups: (x, y = 1, z = 1) => {
      calls.push({ kind: "dispatch", x, y, z })
      pass.dispatchWorkgroups(x, y, z)
    }
  }
  return new Proxy(pass, {
    get: (target, key) => (key in record ? record[key as keyof typeof record] : bound(target, key))
  })
}
