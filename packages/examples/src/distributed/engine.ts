/**
 * The Engine service as the engine a queue worker runs its jobs through:
 * each job is one `generate` call, stopped between two steps when the job's
 * signal aborts (a graceful stop past its grace period). Several calls run
 * at once: the engine decides how they share the GPU.
 */
import type { SampleEngine } from "@canopy/queue"
import type { EngineService } from "@canopy/runtime"
import { Effect } from "effect"

export const sampleEngine = (engine: EngineService): SampleEngine => ({
  generate: (request, events, signal) => Effect.runPromise(engine.generate(request, events), { signal })
})
