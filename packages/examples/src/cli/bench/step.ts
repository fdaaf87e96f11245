/**
 * `canopy bench step`: the host work of one decoding step — CPU ms from
 * building its inputs to the submit, dispatches, bind groups and buffers created and
 * bytes written per step — for the CodeLlama-7b or -13b layer count and head
 * layout at small widths, so that the GPU's share stays small on a software
 * adapter.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { MAX_BATCH_ROWS } from "../bounds.ts"
import { intListFlag, noTuneFlag, positiveInt } from "../flags.ts"

const flags = {
  preset: Flag.Literals("preset", ["codellama-13b", "codellama-7b"]).pipe(
    Flag.withDescription("whose layer count and head layout (default codellama-13b: 40 layers, 40 heads)"),
    Flag.withDefault("codellama-13b" as const)
  ),
  layers: Flag.Int("layers").pipe(
    Flag.withDescription("layers (default: the preset's, 40 for codellama-13b and 32 for codellama-7b; at most 1024)"),
    Flag.filter((n) => n >= 1 && n <= 1024, (n) => `--layers must be from 1 to 1024, got ${n}`),
    Flag.optional
  ),
  heads: Flag.Int("heads").pipe(
    Flag.withDescription(
      "query and KV heads instead of the preset's (the host work does not depend on them, the GPU's does: " +
      "on a software adapter --heads 1 cuts a batch-1,024 step of 40 layers from many minutes to under a minute; at most 1024)"
    ),
    Flag.filter((n) => n >= 1 && n <= 1024, (n) => `--heads must be from 1 to 1024, got ${n}`),
    Flag.optional
  ),
  batch: intListFlag("batch", "1,64,256,1024", 1, "samples decoding together, one point each (default 1,64,256,1024)").pipe(
    Flag.filter((batches) => batches.every((b) => b <= MAX_BATCH_ROWS), () => `--batch must be at most ${MAX_BATCH_ROWS} samples`)
  ),
  warmup: positiveInt("warmup", 2, "untimed steps first at every point (the first makes what later steps reuse)", 100),
  steps: positiveInt("steps", 5, "timed steps at every point (the median and range are reported)", 100),
  separateMerge: Flag.Boolean("separate-merge").pipe(
    Flag.withDescription("also time the host work back to back with the attention's merge as a pass of its own, alternating with the step's fused one"),
    Flag.withDefault(false)
  ),
  separateRope: Flag.Boolean("separate-rope").pipe(
    Flag.withDescription("also time the host work back to back with RoPE and the KV append as a kernel of their own after the q/k/v projection, alternating with the step's fused epilogue"),
    Flag.withDefault(false)
  ),
  json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here"), Flag.optional),
  noTune: noTuneFlag
}

export type BenchStepFlags = Command.Command.Config.Infer<typeof flags>

export const benchStepCommand = Command.make("step", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/step.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Host work of one decode step (CPU ms to the submit, dispatches, bind groups, bytes written) for the 7b/13b layout"))
