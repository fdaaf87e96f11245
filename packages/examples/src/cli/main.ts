/**
 * The `canopy` command line.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect, Runtime } from "effect"
import { Command } from "effect/cli"
import { adapterCommand } from "./adapter.ts"
import { attentionCommand } from "./attention.ts"
import { benchCommand } from "./bench/index.ts"
import { demoCommand } from "./demo.ts"
import { generateCommand } from "./generate.ts"
import { reportFailure } from "./errors.ts"
import { sampleCommand } from "./sample.ts"

const canopy = Command.make("canopy").pipe(
  Command.withDescription("Canopy: decode many LLM sequences that share prompt prefixes arranged as a tree"),
  Command.withSubcommands([demoCommand, sampleCommand, generateCommand, attentionCommand, benchCommand, adapterCommand])
)

// A reader that stops early (`| head`) closes the pipe: stop quietly, as Unix tools do.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
  throw error
})

const program = canopy.pipe(
  Command.run({ version: "0.1.0" }),
  reportFailure,
  Effect.provide(NodeServices.layer)
)

// A live Dawn instance keeps Node running, so the process exits explicitly,
// once standard output has drained (a pipe reader must get the whole answer).
NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    Runtime.defaultTeardown(exit, (code) => {
      const status = code !== 0 ? code : Number(process.exitCode ?? 0)
      onExit(status)
      process.stdout.write("", () => process.exit(status))
    })
})
