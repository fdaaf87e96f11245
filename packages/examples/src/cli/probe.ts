/**
 * `canopy probe`: tries the device's matrix units
 * (chromium-experimental-subgroup-matrix), one kernel per process, from the
 * simplest construct to Canopy's own matrix matmul and matrix level
 * attention, and keeps those two outcomes in the tuning cache: the tuner
 * builds each of them only where it passed (a driver may abort the process
 * building such a kernel).
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"

const flags = {
  json: Flag.String("json").pipe(Flag.withDescription("write every probe's result as JSON here"), Flag.optional)
}

export type ProbeFlags = Command.Command.Config.Infer<typeof flags>

export const probeCommand = Command.make("probe", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/probe.ts")), (m) => m.run(input))
).pipe(Command.withDescription(
  "Try the GPU's matrix units one kernel per process (a driver may abort on one) and let the tuner use Canopy's matrix matmul and matrix level attention where their probes pass"
))
