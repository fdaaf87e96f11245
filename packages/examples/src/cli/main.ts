/**
 * The `canopy` command line.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { adapterCommand } from "./adapter.ts"
import { benchCommand } from "./bench/index.ts"

const canopy = Command.make("canopy").pipe(
  Command.withDescription("Canopy: decode many LLM sequences that share prompt prefixes arranged as a tree"),
  Command.withSubcommands([adapterCommand, benchCommand])
)

const program = canopy.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(NodeServices.layer)
)

// A live Dawn instance keeps Node running: exit explicitly once the program ends.
NodeRuntime.runMain(program, { disableErrorReporting: false })
