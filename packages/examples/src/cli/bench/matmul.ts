/**
 * `canopy bench matmul`: each matmul candidate of the row regime against the
 * device's default kernel, per row count, on one in → out projection.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intListFlag, positiveInt } from "../flags.ts"

/** Largest --in / --out: a 1 GiB f32 weight matrix at the other at 16,384. */
const MAX_DIM = 1 << 16

const dimFlag = (name: string, what: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${what} (default 4096 on a GPU, 512 on a software adapter; at most ${MAX_DIM})`),
    Flag.filter((n) => n >= 1 && n <= MAX_DIM, (n) => `--${name} must be from 1 to ${MAX_DIM}, got ${n}`),
    Flag.optional
  )

const flags = {
  rows: intListFlag("rows", "1,8,64,1024", 1, "rows of X, one point each: up to 8 times the decoding kernels, more the prefill ones (default 1,8,64,1024)").pipe(
    Flag.filter((rows) => rows.every((r) => r <= MAX_DIM), () => `--rows must be at most ${MAX_DIM}`)
  ),
  in: dimFlag("in", "inner dimension of the product (W's columns)"),
  out: dimFlag("out", "output dimension (W's rows)"),
  dtype: Flag.Literals("dtype", ["f32", "f16", "bf16"]).pipe(
    Flag.withDescription("weight type: f32 (the default), or f16 / bf16 (two to a word, or native f16 where the device has shader-f16)"),
    Flag.withDefault("f32" as const)
  ),
  input: Flag.Literals("input", ["plain", "rmsnorm", "swiglu"]).pipe(
    Flag.withDescription("what the product reads: X (plain, the default), RMSNorm(X) or SwiGLU of X's two halves, computed inside the kernel"),
    Flag.withDefault("plain" as const)
  ),
  warmup: positiveInt("warmup", 2, "untimed runs of every candidate first", 100),
  rounds: positiveInt("rounds", 5, "timed rounds, every candidate once a round in rotating order (medians and ranges are reported)", 100),
  dispatches: Flag.Int("dispatches").pipe(
    Flag.withDescription("dispatches of the product per timed sample, figures per dispatch (default 16 on a GPU, 1 on a software adapter; at most 1000)"),
    Flag.filter((n) => n >= 1 && n <= 1000, (n) => `--dispatches must be from 1 to 1000, got ${n}`),
    Flag.optional
  ),
  json: Flag.String("json").pipe(Flag.withDescription("write the report as JSON here"), Flag.optional)
}

export type BenchMatmulFlags = Command.Command.Config.Infer<typeof flags>

export const benchMatmulCommand = Command.make("matmul", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/matmul.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Time every matmul candidate (decoding GEMVs, prefill GEMMs) against the device's default kernel"))
