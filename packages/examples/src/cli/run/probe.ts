/**
 * What `canopy probe` runs (the command and its help are in ../probe.ts).
 * Each probe runs in a child process of the command line itself
 * (bin/canopy.mjs with PROBE_FLAG, answered in main.ts before the commands).
 */
import { existsSync } from "node:fs"
import { writeFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { defaultTuneCache, matrixSetup } from "@canopy/kernels"
import { adapterName, Gpu } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { formatProbe, keepEngineProbes, runProbesIsolated } from "../../bench/subgroupMatrixPart.ts"
import type { ProbeFlags } from "../probe.ts"

/** bin/canopy.mjs of this package, from its sources or its build. */
const commandLine = (): string => {
  for (let at = dirname(fileURLToPath(import.meta.url)); at !== dirname(at); at = dirname(at)) {
    const bin = join(at, "bin", "canopy.mjs")
    if (existsSync(bin)) return bin
  }
  throw new Error("canopy probe: bin/canopy.mjs not found above this module")
}

export const run = (input: ProbeFlags) =>
  Effect.gen(function*() {
    const gpu = yield* Gpu
    yield* Console.log(`adapter: ${adapterName(gpu)}`)
    const setup = matrixSetup(gpu.device)
    if (typeof setup === "string") {
      yield* Console.log(`nothing to probe: ${setup}; the tuner uses the other matmul kernels`)
      return
    }
    yield* Console.log(`matrix units: ${setup.config.M}×${setup.config.N}×${setup.config.K} f16 → f32, subgroups of ${setup.subgroupSize}; each probe in a process of its own`)
    const results = yield* Effect.promise(() => runProbesIsolated(commandLine(), (r) => console.log(formatProbe(r))))
    const cache = defaultTuneCache()
    const kept = keepEngineProbes(gpu.device, results, cache)
    for (const [passed, kernel, others] of [[kept.matmul, "matrix matmul", "matmul kernels"], [kept.level, "matrix level attention", "level tiles"]] as const) {
      yield* Console.log(passed
        ? `the tuner may now time the ${kernel} on this adapter (kept in ${cache!.location})`
        : `the engine's ${kernel} did not pass: the tuner keeps to the other ${others}`)
    }
    const json = Option.getOrUndefined(input.json)
    if (json !== undefined) yield* Effect.promise(() => writeFile(json, `${JSON.stringify({ adapter: adapterName(gpu), results }, null, 2)}\n`))
  }).pipe(Effect.provide(Gpu.layer()))
