/**
 * `canopy bench step`'s report: the JSON it writes and the table it prints.
 */
import { valueWithRange } from "./figures.ts"
import type { SeparatePart, StepPoint } from "./stepBench.ts"
import { STEP_TREE, stepModelConfig, stepModelOf, type StepModel, type StepPreset } from "./stepStack.ts"

export interface StepReport {
  readonly adapter: string
  readonly model: StepModel
  readonly tree: typeof STEP_TREE
  readonly warmup: number
  readonly steps: number
  /** the host time the issue sets as the goal at batch 1,024 for 40 layers */
  readonly goalHostMs: number
  readonly points: ReadonlyArray<StepPoint>
}

export const GOAL_HOST_MS = 1

/** The report of `points` measured on `adapter` for `preset` (at `layers` and `heads` where given), `warmup` and `steps` steps each. */
export const stepReport = (
  adapter: string, shape: { readonly preset: StepPreset; readonly layers?: number | undefined; readonly heads?: number | undefined },
  warmup: number, steps: number, points: ReadonlyArray<StepPoint>
): StepReport => ({
  adapter,
  model: stepModelOf(stepModelConfig(shape.preset, shape.layers, shape.heads), shape.preset),
  tree: STEP_TREE,
  warmup,
  steps,
  goalHostMs: GOAL_HOST_MS,
  points
})

/** The line comparing a point's host work back to back with the same on a step with one fusion undone, where it was timed. */
const separateLine = (p: StepPoint, apart: SeparatePart | undefined, fused: string, separate: string): string | undefined =>
  apart === undefined ? undefined
    : `batch ${p.batch}: back to back, ${fused} ${valueWithRange(p.hostBackToBackMs, 3)} ms (${p.dispatchesPerStep} dispatches), ` +
      `${separate} ${valueWithRange(apart.hostBackToBackMs, 3)} ms (${apart.dispatchesPerStep}), in alternation: ` +
      `${(apart.hostBackToBackMs.median / p.hostBackToBackMs.median).toFixed(2)}× the fused host time`

const percent = (part: number, whole: number): string => `${whole > 0 ? ((100 * part) / whole).toFixed(0) : "—"}%`

export const formatStepTable = (report: StepReport): ReadonlyArray<string> => {
  const header = [
    "batch", "layers", "host CPU ms/step", "µs/layer", "back to back", "wall ms", "inputs", "plan", "prepare", "encode", "submit",
    "bind groups", "buffers", "dispatches", "per layer", "bytes written", "first step: bind groups, buffers", "GPU ms", "calls alone ms", "after the GPU", "submit alone ms"
  ]
  const rows = report.points.map((p) => {
    const f = p.phases
    const whole = f.planMs + f.prepareMs + f.batchMs + f.encodeMs + f.submitMs
    return [
      String(p.batch),
      String(p.layers),
      valueWithRange(p.hostMs, 3),
      ((1000 * p.hostMsPerStep) / p.layers).toFixed(1),
      valueWithRange(p.hostBackToBackMs, 3),
      valueWithRange(p.hostWallMs, 3),
      percent(f.batchMs, whole),
      percent(f.planMs, whole),
      percent(f.prepareMs, whole),
      percent(f.encodeMs, whole),
      percent(f.submitMs, whole),
      String(p.bindGroupsPerStep),
      String(p.buffersPerStep),
      String(p.dispatchesPerStep),
      (p.dispatchesPerStep / p.layers).toFixed(1),
      String(p.bytesWrittenPerStep),
      `${p.firstStep.bindGroups}, ${p.firstStep.buffers}`,
      p.gpuMsPerStep.toFixed(0),
      p.callsAloneMs === undefined ? "-" : valueWithRange(p.callsAloneMs, 3),
      p.callsAfterGpuMs === undefined ? "-" : p.callsAfterGpuMs.toFixed(3),
      p.submitAloneMs === undefined ? "-" : valueWithRange(p.submitAloneMs, 3)
    ]
  })
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padStart(widths[i]!)).join("  ")
  const m = report.model
  const t = report.tree
  return [
    `${report.adapter}; ${m.preset} layout at small widths: ${m.layers} layers, ${m.heads}/${m.kvHeads} heads of dim ${m.headDim}, hidden ${m.hidden}`,
    `tree: ${t.prefixTokens}-token prefix → ${t.problems} problems × ${t.problemTokens} → one leaf per sample; ` +
    `${report.warmup} untimed step${report.warmup === 1 ? "" : "s"}, then ${report.steps} timed; ` +
    "host: CPU ms from building the step's inputs to the submit (the submit call itself on the wall clock: it starts the GPU), " +
    "median (range); back to back: the same host work repeated with no GPU work between, never submitted (the CPU's own cost, caches warm); " +
    "wall ms: the step's span on the wall clock, with its phases as shares of it; counts: the most any timed step " +
    "asked for (dispatches per layer: the step's over its layers, the embedding and the logits' few included); GPU ms: the wait after the submit, apart; " +
    "calls alone: CPU ms of the step's WebGPU calls (pipelines, bind groups, dispatches) replayed into a new encoder with nothing else, to its finish, back to back, and once as a step starts (after the GPU's work); " +
    "submit alone: CPU ms of submitting those calls with empty grids (the submit's own host cost, which back to back leaves out)",
    line(header),
    ...rows.map(line),
    ...report.points.map((p) =>
      `batch ${p.batch}: back to back, the plan refreshed ${valueWithRange(p.hostBackToBackMs, 3)} ms, built from nothing ` +
      `${valueWithRange(p.freshPlanBackToBackMs, 3)} ms, in alternation: ${(p.freshPlanBackToBackMs.median / p.hostBackToBackMs.median).toFixed(2)}× the step's host time`
    ),
    ...report.points.flatMap((p) => [
      separateLine(p, p.separateMerge, "the merge fused", "as a pass of its own"),
      separateLine(p, p.separateRope, "RoPE and the KV append in the q/k/v epilogue", "as a kernel of their own")
    ].filter((l) => l !== undefined)),
    ...report.points
      .filter((p) => p.batch === 1024 && p.layers === 40)
      .map((p) =>
        `batch 1024, 40 layers: ${(p.hostMsPerStep / report.goalHostMs).toFixed(2)}× the ${report.goalHostMs} ms goal of host time per step ` +
        `(${(p.hostBackToBackMs.median / report.goalHostMs).toFixed(2)}× back to back)` +
        (p.callsAloneMs === undefined ? "" : `; the WebGPU calls alone take ${(p.callsAloneMs.median / report.goalHostMs).toFixed(2)}× it back to back` +
          (p.callsAfterGpuMs === undefined ? "" : `, ${(p.callsAfterGpuMs / report.goalHostMs).toFixed(2)}× right after the GPU's work`)) +
        (p.submitAloneMs === undefined ? "" : `; their submit alone ${(p.submitAloneMs.median / report.goalHostMs).toFixed(2)}× it more`)
      )
  ]
}
