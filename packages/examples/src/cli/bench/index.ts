/**
 * `canopy bench …`: benchmarks that print figures (and JSON).
 */
import { Command } from "effect/cli"
import { benchAttentionCommand } from "./attention.ts"
import { benchDecodeCommand } from "./decode.ts"
import { benchPlanCommand } from "./plan.ts"
import { benchRooflineCommand } from "./roofline.ts"
import { benchServeCommand } from "./serve.ts"

export const benchCommand = Command.make("bench").pipe(
  Command.withDescription("Benchmarks: plan time, attention (hydragen vs baseline), roofline, decode"),
  Command.withSubcommands([benchPlanCommand, benchAttentionCommand, benchDecodeCommand, benchRooflineCommand, benchServeCommand])
)
