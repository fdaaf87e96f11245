/**
 * The `canopy` command line.
 */
// the modules themselves, not the package's index, which loads its HTTP, socket and worker modules too (a third of a second)
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Runtime } from "effect"
import { Command } from "effect/cli"
import { canopy, VERSION } from "./canopy.ts"
import { PROBE_FLAG } from "../bench/probeFlag.ts"
import { reportFailure } from "./errors.ts"

// A reader that stops early (`| head`) closes the pipe: stop quietly, as Unix tools do.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
  throw error
})

const program = canopy.pipe(
  Command.run({ version: VERSION }),
  reportFailure,
  Effect.provide(NodeServices.layer)
)

// A live Dawn instance keeps Node running, so the process exits explicitly,
// once standard output has drained (a pipe reader must get the whole answer).
// A probe's child process (canopy probe runs each probe in one) answers before any command is parsed.
if (process.argv[2] === PROBE_FLAG) {
  const { probeChild } = await import("../bench/subgroupMatrixPart.ts")
  const code = await probeChild(process.argv[3] ?? "")
  process.stdout.write("", () => process.exit(code))
} else NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    Runtime.defaultTeardown(exit, (code) => {
      const status = code !== 0 ? code : Number(process.exitCode ?? 0)
      onExit(status)
      process.stdout.write("", () => process.exit(status))
    })
})
