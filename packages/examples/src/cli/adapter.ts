/**
 * `canopy adapter`: every WebGPU adapter Canopy finds on this machine (what
 * each offers, the one it picks marked), then the picked one opened as a
 * device with a small compute check that it returns correct numbers.
 */
import { Effect } from "effect"
import { Command } from "effect/cli"

export const adapterCommand = Command.make("adapter", {}, () =>
  Effect.flatMap(Effect.promise(() => import("./run/adapter.ts")), (m) => m.run())
).pipe(Command.withDescription("List the WebGPU adapters found here, show the one Canopy uses and check that it computes correctly"))
