/**
 * `canopy bench capacity`: the tokens the KV cache holds at the engine's
 * default memory (or at --kv-memory) for the CodeLlama-7b and -13b shapes, in
 * f16 and in f32. Arithmetic only: no device is opened.
 */
import { Effect } from "effect"
import { Command } from "effect/cli"
import { DEFAULT_BLOCK_SIZE } from "../bounds.ts"
import { kvMemoryFlag, positiveInt } from "../flags.ts"

const flags = {
  kvMemory: kvMemoryFlag,
  blockSize: positiveInt("block-size", DEFAULT_BLOCK_SIZE, "tokens per KV block", 1024)
}

export type BenchCapacityFlags = Command.Command.Config.Infer<typeof flags>

export const benchCapacityCommand = Command.make("capacity", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/capacity.ts")), (m) => m.run(input))
).pipe(Command.withDescription("KV cache capacity in tokens for the 7b and 13b shapes, f16 against f32, at the default memory (no GPU needed)"))
