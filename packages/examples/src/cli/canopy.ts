/**
 * The `canopy` command tree, apart from the process that runs it (main.ts),
 * so that tests can run it in process.
 *
 * Each command's module holds only its flags and descriptions; its handler
 * imports what the command runs (run/COMMAND.ts, which exports `run`) when
 * it runs. So the tree loads in a blink and `--help` loads neither the
 * kernels nor Dawn: a command's module must not import @canopy/runtime,
 * @canopy/kernels, @canopy/server or @canopy/queue (their bounds that the help
 * shows are in bounds.ts). startup.test.ts checks both.
 */
import { Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { adapterCommand } from "./adapter.ts"
import { attentionCommand } from "./attention.ts"
import { benchCommand } from "./bench/index.ts"
import { collectCommand } from "./collect.ts"
import { demoCommand } from "./demo.ts"
import { generateCommand } from "./generate.ts"
import { probeCommand } from "./probe.ts"
import { sampleCommand } from "./sample.ts"
import { serveCommand } from "./serve.ts"
import { statusCommand } from "./status.ts"
import { workerCommand } from "./worker.ts"

export const VERSION = "0.1.0"

/**
 * `canopy help [SUBCOMMAND...]`: the same text as `canopy [SUBCOMMAND...] --help`,
 * produced by running exactly that, so the two cannot drift apart.
 */
const helpCommand = Command.make(
  "help",
  { path: Argument.String("subcommand").pipe(Argument.withDescription("the subcommand to describe, e.g. generate, or bench attention"), Argument.variadic()) },
  ({ path }) => Effect.suspend(() => Command.runWith(canopy, { version: VERSION })([...path, "--help"]))
).pipe(Command.withDescription("Show the help of canopy or of a subcommand (canopy help generate is canopy generate --help)"))

export const canopy: Command.Command<"canopy", {}, {}, unknown, Command.Environment> = Command.make("canopy").pipe(
  Command.withDescription("Canopy: decode many LLM sequences that share prompt prefixes arranged as a tree"),
  Command.withSubcommands([
    demoCommand, sampleCommand, workerCommand, statusCommand, collectCommand, generateCommand, serveCommand, attentionCommand, benchCommand,
    adapterCommand, probeCommand, helpCommand
  ])
)
