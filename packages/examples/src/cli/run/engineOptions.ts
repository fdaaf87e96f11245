/**
 * The engine options of a command that runs an engine, from its flags:
 * `--max-batch` (where it has one), `--kv-memory`, `--kv-dtype`, `--no-tune`
 * and `--no-overlap`.
 */
import type { EngineOptions } from "@canopy/runtime"
import type { Option } from "effect"
import { kvOptions } from "../flags.ts"
import { tuneSetting } from "./tune.ts"

export interface EngineFlags {
  readonly batch?: number
  readonly kvMemory: Option.Option<number>
  readonly kvDtype: "f16" | "f32"
  readonly noTune: boolean
  readonly noOverlap: boolean
}

export const engineOptionsOf = (flags: EngineFlags): EngineOptions => ({
  ...(flags.batch !== undefined ? { maxBatch: flags.batch } : {}),
  ...kvOptions(flags.kvMemory, flags.kvDtype),
  tune: tuneSetting(flags.noTune),
  overlap: !flags.noOverlap
})
