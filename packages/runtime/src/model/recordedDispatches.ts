/**
 * Dispatches recorded once and replayed into the compute passes of later
 * steps. The forward's kernels are bound once for any row count, so what they
 * encode for a step depends on its row count only: recording it (through a
 * stand-in pass that keeps each dispatch's pipeline, bind group and grid in
 * flat arrays) leaves a step only the Dawn calls themselves, with none of the
 * kernels' per-dispatch work in JavaScript (grids, closures, allocations), and
 * drops a setPipeline or setBindGroup that repeats the one before it.
 *
 * A recording is split into parts at the points where other work (a layer's
 * attention) goes between them; replaying a part forgets what the pass had
 * bound before, so that work may bind anything.
 */

/** What the model kernels call on a pass: one pipeline, bind group 0 without dynamic offsets, a 1–3-D grid. */
interface RecordingPass {
  setPipeline(pipeline: GPUComputePipeline): void
  setBindGroup(index: number, group: GPUBindGroup | null, dynamicOffsets?: Iterable<number>): void
  dispatchWorkgroups(x: number, y?: number, z?: number): void
}

export class RecordedDispatches {
  private constructor(
    private readonly pipelines: ReadonlyArray<GPUComputePipeline>,
    private readonly groups: ReadonlyArray<GPUBindGroup>,
    /** x, y, z of each dispatch */
    private readonly grids: Uint32Array,
    /** part p is dispatches [ends[p − 1], ends[p]) */
    private readonly ends: Uint32Array
  ) {}

  /** Dispatches of all parts. */
  get dispatches(): number {
    return this.pipelines.length
  }

  /** Records what each of `parts` encodes, in order, as one part each. */
  static record(parts: ReadonlyArray<(pass: GPUComputePassEncoder) => void>): RecordedDispatches {
    const pipelines: Array<GPUComputePipeline> = []
    const groups: Array<GPUBindGroup> = []
    const grids: Array<number> = []
    let pipeline: GPUComputePipeline | null = null
    let group: GPUBindGroup | null = null
    const pass: RecordingPass = {
      setPipeline: (p) => void (pipeline = p),
      setBindGroup: (index, g, offsets) => {
        if (index !== 0 || g === null || (offsets !== undefined && [...offsets].length > 0)) {
          throw new Error("recorded dispatches: only bind group 0, without dynamic offsets, is recorded")
        }
        group = g
      },
      dispatchWorkgroups: (x, y = 1, z = 1) => {
        if (pipeline === null || group === null) throw new Error("recorded dispatches: a dispatch before its pipeline and bind group")
        pipelines.push(pipeline)
        groups.push(group)
        grids.push(x, y, z)
      }
    }
    const ends = parts.map((encode) => {
      // a part starts from nothing bound, as its replay does
      pipeline = null
      group = null
      encode(pass as unknown as GPUComputePassEncoder)
      return pipelines.length
    })
    return new RecordedDispatches(pipelines, groups, Uint32Array.from(grids), Uint32Array.from(ends))
  }

  /** Encodes part `part` into `pass`. */
  replay(pass: GPUComputePassEncoder, part: number): void {
    const { pipelines, groups, grids } = this
    let pipeline: GPUComputePipeline | null = null
    let group: GPUBindGroup | null = null
    for (let i = part === 0 ? 0 : this.ends[part - 1]!, end = this.ends[part]!; i < end; i++) {
      if (pipelines[i] !== pipeline) pass.setPipeline((pipeline = pipelines[i]!))
      if (groups[i] !== group) pass.setBindGroup(0, (group = groups[i]!))
      const x = grids[3 * i]!
      const y = grids[3 * i + 1]!
      const z = grids[3 * i + 2]!
      // through Dawn's binding every argument costs: a 1-D grid passes one (about 5% of a dispatch's call)
      if (y === 1 && z === 1) pass.dispatchWorkgroups(x)
      else pass.dispatchWorkgroups(x, y, z)
    }
  }
}
