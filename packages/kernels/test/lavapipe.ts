/**
 * Where the shader-f16 kernel tests run without a GPU: Mesa's lavapipe, which
 * Canopy finds by itself once scripts/lavapipe.sh has fetched it (scripts/
 * setup.sh does so on a machine without a GPU). Without it these suites skip,
 * saying why in their title and on stderr; in CI (CI=true) a missing lavapipe
 * fails them instead, so the native f16 paths never go untested there unseen.
 */
import { describe, it } from "vitest"
import { type GpuHandle, listAdapters, openGpu } from "../src/gpu/device.ts"

/** The name lavapipe's adapter goes by in Dawn ("llvmpipe (LLVM 15.0.6, 256 bits)"). */
const LAVAPIPE = /llvmpipe|lavapipe/i

const findLavapipe = async (): Promise<string | undefined> => {
  const listed = await listAdapters("auto")
  const lavapipe = listed.find((a) => LAVAPIPE.test(a.candidate.name))
  if (lavapipe === undefined) {
    const names = listed.map((a) => a.candidate.name).join(", ") || "none"
    return `lavapipe not found (adapters here: ${names}); scripts/lavapipe.sh fetches it, scripts/setup.sh does so on a machine without a GPU`
  }
  return lavapipe.features.includes("shader-f16") ? undefined : `lavapipe (${lavapipe.candidate.name}) has no shader-f16: Mesa 25 or later is needed`
}

/** Why lavapipe cannot run the suites here; undefined when it can. */
export const lavapipeMissing = await findLavapipe()

const inCi = process.env["CI"] === "true"

/** A suite on lavapipe: run where it is, skipped with the reason where not, failing in CI where not. */
export const describeOnLavapipe = (title: string, body: () => void): void => {
  if (lavapipeMissing === undefined) {
    describe(title, body)
    return
  }
  if (inCi) {
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

/** A device on lavapipe, picked by name as CANOPY_ADAPTER=llvmpipe would. */
export const openLavapipe = (): Promise<GpuHandle> => openGpu({ adapter: { name: "llvmpipe" } })
