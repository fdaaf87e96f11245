/**
 * The form's fields read into settings: problems split back as they were
 * joined, and every bad number refused by a FormError naming its field.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { FIELD_BOUNDS, FormError, joinProblems, readSettings, splitProblems } from "../src/form.ts"
import { DEFAULT_SETTINGS } from "../src/settings.ts"

const problem = fc.string({ unit: fc.constantFrom(..."ab -\n:é🌲"), minLength: 1, maxLength: 30 })
  .filter((p) => p.trim() !== "" && p.split("\n").every((line) => line.trim() !== "---"))

const goodValues: Record<string, string> = {
  fewShot: "prefix", problems: "a", samples: "2", maxTokens: "8", temperature: "0.5", seed: "1", modelSeed: "0", preset: "tiny"
}

const refusal = (values: Record<string, string>): unknown => {
  try {
    return readSettings(values)
  } catch (e) {
    return e
  }
}

describe("the form", () => {
  it("splits the problems it joined, whatever their text", () => {
    fc.assert(fc.property(fc.array(problem, { minLength: 1, maxLength: 5 }), (problems) => {
      expect(splitProblems(joinProblems(problems))).toEqual(problems)
    }))
    expect(splitProblems(joinProblems(DEFAULT_SETTINGS.tree.problems))).toEqual(DEFAULT_SETTINGS.tree.problems)
  })

  it("reads good values", () => {
    expect(readSettings(goodValues)).toEqual({
      preset: "tiny",
      tree: { fewShot: "prefix", problems: ["a"], samples: 2 },
      sampling: { maxTokens: 8, temperature: 0.5, seed: 1 },
      modelSeed: 0
    })
  })

  it("refuses a number out of range, fractional where whole, or not a number, naming the field", () => {
    const bad = fc.constantFrom(...Object.keys(FIELD_BOUNDS)).chain((field) => {
      const b = FIELD_BOUNDS[field]!
      return fc.tuple(fc.constant(field), fc.oneof(
        fc.constantFrom("", "abc", "1e999", "NaN"),
        fc.double({ min: b.max + 1, max: 1e12, noNaN: true }).map(String),
        fc.double({ min: -1e12, max: b.min - 1e-3, noNaN: true }).map(String),
        ...(b.integer ? [fc.integer({ min: b.min, max: b.max - 1 }).map((n) => `${n}.5`)] : [])
      ))
    })
    fc.assert(fc.property(bad, ([field, value]) => {
      const e = refusal({ ...goodValues, [field]: value })
      expect(e).toBeInstanceOf(FormError)
      expect((e as FormError).field).toBe(field)
    }))
  })

  it("refuses no problems and an unknown model preset", () => {
    expect((refusal({ ...goodValues, problems: "\n---\n  \n" }) as FormError).field).toBe("problems")
    expect((refusal({ ...goodValues, preset: "gpt-9" }) as FormError).message).toBe(
      `preset: must be one of tiny, codellama-7b, codellama-13b, got "gpt-9"`
    )
  })
})
