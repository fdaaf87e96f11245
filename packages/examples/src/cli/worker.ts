/**
 * `canopy worker`: one GPU's worth of a distributed run. It connects to the
 * queue first (a wrong URL, or a queue that does not answer, is reported
 * before a model loads), then sets up the GPU, the model and the engine, and
 * only then takes jobs: several in flight, from the prefix groups it holds
 * first. A worker whose engine cannot be set up records why on the queue
 * (`canopy status` shows it) and exits with the error, having taken no job.
 * SIGINT or SIGTERM stops it gracefully.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { poolFlag, queueFlag } from "../distributed/flags.ts"
import { DEFAULT_GRACE_MS } from "./bounds.ts"
import { kvDtypeFlag, kvMemoryFlag, MAX_BATCH, modelFlag, noOverlapFlag, noTuneFlag, positiveInt, weightDtypeFlag } from "./flags.ts"

const flags = {
  queue: queueFlag,
  model: modelFlag,
  concurrency: positiveInt("concurrency", 8, "jobs in flight at once, each a generate call on the engine", 4096),
  pool: poolFlag,
  id: Flag.String("id").pipe(
    Flag.withDescription("the worker's name on the queue (default: HOST-PID)"),
    Flag.filter((id) => /^[\w.-]{1,128}$/.test(id), (id) => `--id must be 1 to 128 letters, digits, ".", "-" or "_", got ${JSON.stringify(id)}`),
    Flag.optional
  ),
  grace: positiveInt("grace", DEFAULT_GRACE_MS / 1000, "seconds the jobs in flight get to finish when the worker is stopped; the rest return to waiting", 86_400),
  batch: positiveInt("max-batch", 1024, "most samples decoding at once", MAX_BATCH),
  kvMemory: kvMemoryFlag,
  kvDtype: kvDtypeFlag,
  noTune: noTuneFlag,
  noOverlap: noOverlapFlag,
  dtype: weightDtypeFlag,
  quiet: Flag.Boolean("quiet").pipe(Flag.withDescription("no status line"), Flag.withDefault(false))
}

export type WorkerFlags = Command.Command.Config.Infer<typeof flags>

export const workerCommand = Command.make("worker", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("./run/worker.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Take jobs of distributed sampling runs from a queue (canopy sample --queue) and draw their samples on this machine's GPU"))
