/**
 * The form's fields read into PageSettings. A field that does not hold what
 * it should is a FormError naming it, before any model is loaded or token
 * decoded; the engine checks the tree and the sampling values again.
 */
import { elementCount, isPresetName, PRESET_NAMES, PRESETS, tensorSpecs } from "@canopy/runtime/browser"
import { Data } from "effect"
import { formatBytes } from "./memory.ts"
import { type PageSettings, PROBLEM_SEPARATOR } from "./settings.ts"

export class FormError extends Data.TaggedError("FormError")<{
  readonly field: string
  readonly problem: string
}> {
  override get message(): string {
    return `${this.field}: ${this.problem}`
  }
}

/** The form's values by field name, as strings (what `<input>` and `<textarea>` hold). */
export type FormValues = Readonly<Record<string, string>>

export interface Bounds {
  readonly min: number
  readonly max: number
  readonly integer: boolean
}

/** Largest values the form takes: a page is for looking at a tree, not for a benchmark. */
export const FIELD_BOUNDS: Readonly<Record<string, Bounds>> = {
  samples: { min: 1, max: 64, integer: true },
  maxTokens: { min: 1, max: 1024, integer: true },
  temperature: { min: 0, max: 10, integer: false },
  seed: { min: 0, max: 2 ** 32 - 1, integer: true },
  modelSeed: { min: 0, max: 2 ** 32 - 1, integer: true }
}

export const readNumber = (values: FormValues, field: string): number => {
  const bounds = FIELD_BOUNDS[field]!
  const raw = (values[field] ?? "").trim()
  const value = Number(raw)
  if (raw === "" || !Number.isFinite(value)) throw new FormError({ field, problem: `must be a number, got ${JSON.stringify(raw)}` })
  if (bounds.integer && !Number.isInteger(value)) throw new FormError({ field, problem: `must be a whole number, got ${raw}` })
  if (value < bounds.min || value > bounds.max) {
    throw new FormError({ field, problem: `must be from ${bounds.min} to ${bounds.max}, got ${raw}` })
  }
  return value
}

/** Problems are separated by a line holding only `---`; empty ones are dropped. */
export const splitProblems = (text: string): Array<string> =>
  text.split(/\r?\n/).reduce<Array<Array<string>>>((parts, line) => {
    if (line.trim() === PROBLEM_SEPARATOR) parts.push([])
    else parts[parts.length - 1]!.push(line)
    return parts
  }, [[]]).map((lines) => lines.join("\n")).filter((p) => p.trim() !== "")

export const joinProblems = (problems: ReadonlyArray<string>): string => problems.join(`\n${PROBLEM_SEPARATOR}\n`)

/** The synthetic models to choose from, each with the memory its f32 weights take. */
export const presetOptions = (): Array<{ readonly value: string; readonly label: string }> =>
  PRESET_NAMES.map((name) => ({
    value: name,
    label: `${name} (${formatBytes(4 * tensorSpecs(PRESETS[name]).reduce((n, spec) => n + elementCount(spec.shape), 0))} of weights)`
  }))

export const readSettings = (values: FormValues): PageSettings => {
  const problems = splitProblems(values["problems"] ?? "")
  if (problems.length === 0) throw new FormError({ field: "problems", problem: `give at least one problem (separate them by a line holding only ${PROBLEM_SEPARATOR})` })
  const preset = values["preset"] ?? ""
  if (!isPresetName(preset)) throw new FormError({ field: "preset", problem: `must be one of ${PRESET_NAMES.join(", ")}, got ${JSON.stringify(preset)}` })
  return {
    preset,
    tree: { fewShot: values["fewShot"] ?? "", problems, samples: readNumber(values, "samples") },
    sampling: { maxTokens: readNumber(values, "maxTokens"), temperature: readNumber(values, "temperature"), seed: readNumber(values, "seed") },
    modelSeed: readNumber(values, "modelSeed")
  }
}
