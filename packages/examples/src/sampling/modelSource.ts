/**
 * The model that `--model` and `--dtype` name, read before anything is
 * acquired: the commands check it first, the model stack loads it.
 */
import type { WeightType } from "@canopy/kernels"
import { type ModelSource, parseModelSource } from "@canopy/runtime"
import { Effect } from "effect"
import { InvalidFlag } from "../cli/errors.ts"

/**
 * The model `--model` and `--dtype` name. `--dtype` sets a synthetic model's
 * weight type; a model folder loads in the dtype its safetensors hold, so
 * `--dtype` with a folder is refused, saying so.
 */
export const modelSourceOf = (model: string, dtype?: WeightType, seed = 0): ModelSource => {
  const source = parseModelSource(model, seed)
  if (dtype === undefined) return source
  if (source.kind === "folder") {
    throw new InvalidFlag(
      `--dtype ${dtype}: ${source.dir} is a model folder, loaded in the dtype its safetensors files hold (f32, f16 or bf16, kept as stored); --dtype is for synthetic:PRESET models`
    )
  }
  return { ...source, dtype }
}

/** Checks `--model`'s form (a known preset, or a folder) before anything is acquired; the model stack reads it again. */
export const checkModelSpec = (model: string, dtype?: WeightType): Effect.Effect<void, unknown> =>
  Effect.try({ try: () => void modelSourceOf(model, dtype), catch: (e) => e })
