/**
 * `canopy bench …`: benchmarks that print figures (and JSON).
 */
import { Command } from "effect/cli"
import { benchAttentionCommand } from "./attention.ts"
import { benchCapacityCommand } from "./capacity.ts"
import { benchDecodeCommand } from "./decode.ts"
import { benchMatmulCommand } from "./matmul.ts"
import { benchPlanCommand } from "./plan.ts"
import { benchQueueCommand } from "./queue.ts"
import { benchRooflineCommand } from "./roofline.ts"
import { benchScheduleCommand } from "./schedule.ts"
import { benchServeCommand } from "./serve.ts"
import { benchStepCommand } from "./step.ts"

export const benchCommand = Command.make("bench").pipe(
  Command.withDescription("Benchmarks: plan time, attention (hydragen vs baseline), roofline, decode, the matmul candidates, KV capacity, the step's host work, the distributed queue, continuous batching vs waves"),
  Command.withSubcommands([benchPlanCommand, benchAttentionCommand, benchDecodeCommand, benchRooflineCommand, benchMatmulCommand, benchServeCommand, benchCapacityCommand, benchStepCommand, benchQueueCommand, benchScheduleCommand])
)
