/**
 * Recorded dispatches replay what was encoded, part by part: every dispatch
 * with its pipeline, bind group and grid, a repeated pipeline or bind group
 * set once, and each part starting from nothing bound, whatever ran between.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { RecordedDispatches } from "../src/model/recordedDispatches.ts"

type Call = readonly ["pipeline", number] | readonly ["group", number] | readonly ["dispatch", number, number, number]

/** A pass that logs its calls, pipelines and groups by their number. */
const loggingPass = (log: Array<Call>): GPUComputePassEncoder => ({
  setPipeline: (p: { id: number }) => log.push(["pipeline", p.id]),
  setBindGroup: (_index: number, g: { id: number }) => log.push(["group", g.id]),
  dispatchWorkgroups: (x: number, y = 1, z = 1) => log.push(["dispatch", x, y, z])
}) as unknown as GPUComputePassEncoder

interface Dispatch {
  readonly pipeline: number
  readonly group: number
  readonly grid: readonly [number, number, number]
}

const pipelines = Array.from({ length: 3 }, (_, id) => ({ id }) as unknown as GPUComputePipeline)
const groups = Array.from({ length: 3 }, (_, id) => ({ id }) as unknown as GPUBindGroup)

/** Encodes `d` as a kernel does: its pipeline, its group, its grid. */
const encode = (pass: GPUComputePassEncoder, d: Dispatch): void => {
  pass.setPipeline(pipelines[d.pipeline]!)
  pass.setBindGroup(0, groups[d.group]!)
  pass.dispatchWorkgroups(...d.grid)
}

/** What a replay of `part` must call: each dispatch, after the pipeline and group that differ from the previous one's. */
const expectedCalls = (part: ReadonlyArray<Dispatch>): Array<Call> => {
  const calls: Array<Call> = []
  part.forEach((d, i) => {
    if (i === 0 || part[i - 1]!.pipeline !== d.pipeline) calls.push(["pipeline", d.pipeline])
    if (i === 0 || part[i - 1]!.group !== d.group) calls.push(["group", d.group])
    calls.push(["dispatch", ...d.grid])
  })
  return calls
}

const dispatchArb = fc.record({
  pipeline: fc.integer({ min: 0, max: 2 }),
  group: fc.integer({ min: 0, max: 2 }),
  grid: fc.tuple(fc.integer({ min: 0, max: 70000 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }))
})

describe("recorded dispatches", () => {
  it("replay each part's dispatches, dropping only a repeated pipeline or bind group", () => {
    fc.assert(fc.property(fc.array(fc.array(dispatchArb, { maxLength: 6 }), { minLength: 1, maxLength: 5 }), (parts) => {
      const recorded = RecordedDispatches.record(parts.map((part) => (pass) => part.forEach((d) => encode(pass, d))))
      expect(recorded.dispatches).toBe(parts.reduce((n, p) => n + p.length, 0))
      // replayed in reverse, with another kernel's work in between: each part binds what it needs itself
      for (let p = parts.length - 1; p >= 0; p--) {
        const log: Array<Call> = []
        const pass = loggingPass(log)
        encode(pass, { pipeline: 0, group: 0, grid: [1, 1, 1] })
        log.length = 0
        recorded.replay(pass, p)
        expect(log).toEqual(expectedCalls(parts[p]!))
      }
    }), { numRuns: 200, seed: 3 })
  })

  it("refuses what it does not record: another bind group index, dynamic offsets, a dispatch with nothing bound", () => {
    expect(() => RecordedDispatches.record([(pass) => pass.setBindGroup(1, groups[0]!)])).toThrow(/only bind group 0/)
    expect(() => RecordedDispatches.record([(pass) => pass.setBindGroup(0, groups[0]!, [256])])).toThrow(/without dynamic offsets/)
    expect(() => RecordedDispatches.record([(pass) => pass.dispatchWorkgroups(1)])).toThrow(/before its pipeline and bind group/)
    // state does not carry from one part into the next
    expect(() => RecordedDispatches.record([(pass) => encode(pass, { pipeline: 0, group: 0, grid: [1, 1, 1] }), (pass) => pass.dispatchWorkgroups(1)]))
      .toThrow(/before its pipeline and bind group/)
  })
})
