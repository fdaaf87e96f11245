/**
 * Whether Mesa's lavapipe (an adapter with shader-f16, fetched by
 * scripts/lavapipe.sh) is here, for the command-line checks that run on it:
 * without it they skip, saying why, except in CI (CI=true), where they fail.
 * The kernels' suites use the same rule (packages/kernels/test/lavapipe.ts).
 */
import { listAdapters } from "@canopy/kernels"
import { describe, it } from "vitest"

const listed = await listAdapters("auto")
const lavapipe = listed.find((a) => /llvmpipe|lavapipe/i.test(a.candidate.name) && a.features.includes("shader-f16"))

/** Why lavapipe cannot run the checks here; undefined when it can. */
export const lavapipeMissing = lavapipe !== undefined
  ? undefined
  : `no lavapipe with shader-f16 among the adapters here (${listed.map((a) => a.candidate.name).join(", ") || "none"}); scripts/lavapipe.sh fetches it`

export const describeOnLavapipe = (title: string, body: () => void): void => {
  if (lavapipeMissing === undefined) {
    describe(title, body)
    return
  }
  if (process.env["CI"] === "true") {
    describe(title, () => {
      it("has lavapipe to run on (CI must test the shader-f16 paths)", () => {
        throw new Error(lavapipeMissing)
      })
    })
    return
  }
  console.warn(`skipping "${title}": ${lavapipeMissing}`)
  describe.skip(`${title} — skipped: ${lavapipeMissing}`, body)
}
