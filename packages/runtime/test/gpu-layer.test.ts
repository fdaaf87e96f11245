import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Gpu } from "../src/Gpu.ts"

describe("the Gpu layer", () => {
  it("opens a device for the program and destroys it when the program ends", async () => {
    const device = await Effect.runPromise(
      Effect.gen(function*() {
        const gpu = yield* Gpu
        expect(gpu.device.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThan(0)
        expect(gpu.adapter.description.length + gpu.adapter.vendor.length).toBeGreaterThan(0)
        return gpu.device
      }).pipe(Effect.provide(Gpu.layer()))
    )
    const lost = await device.lost
    expect(lost.reason).toBe("destroyed")
  })
})
