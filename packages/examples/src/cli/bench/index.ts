/**
 * `canopy bench …`: benchmarks that print figures (and JSON).
 */
import { Command } from "effect/cli"
import { benchPlanCommand } from "./plan.ts"

export const benchCommand = Command.make("bench").pipe(
  Command.withDescription("Benchmarks: plan time, attention (hydragen vs baseline), roofline, decode"),
  Command.withSubcommands([benchPlanCommand])
)
