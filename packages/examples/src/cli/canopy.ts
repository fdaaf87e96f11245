/**
 * The `canopy` command tree, apart from the process that runs it (main.ts),
 * so that tests can run it in process.
 */
import { Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { adapterCommand } from "./adapter.ts"
import { attentionCommand } from "./attention.ts"
import { benchCommand } from "./bench/index.ts"
import { demoCommand } from "./demo.ts"
import { generateCommand } from "./generate.ts"
import { sampleCommand } from "./sample.ts"
import { serveCommand } from "./serve.ts"

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
  Command.withSubcommands([demoCommand, sampleCommand, generateCommand, serveCommand, attentionCommand, benchCommand, adapterCommand, helpCommand])
)
