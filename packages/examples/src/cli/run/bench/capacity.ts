/**
 * What `canopy bench capacity` runs (the command and its help are in ../../bench/capacity.ts).
 */
import { KV_DTYPES } from "@canopy/kernels"
import { PRESETS } from "@canopy/runtime"
import { Console, Effect, Option } from "effect"
import { DEFAULT_KV_MEMORY, kvCapacity } from "../../../bench/kvCapacity.ts"
import { times } from "../../../bench/figures.ts"
import type { BenchCapacityFlags } from "../../bench/capacity.ts"

const MODELS = ["codellama-7b", "codellama-13b"] as const

const mib = (bytes: number): string => (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0 ? `${bytes / 2 ** 30} GiB` : `${bytes / 2 ** 20} MiB`)
const count = (n: number): string => n.toLocaleString("en-US")

interface Memory {
  readonly title: string
  readonly bytes: number
}

/** The table: a row per model and KV dtype, a tokens column per memory; then f16's tokens over f32's at the first memory. */
export const formatCapacity = (memories: ReadonlyArray<Memory>, blockSize: number): ReadonlyArray<string> => {
  const header = ["model", "layers", "KV heads", "head dim", "KV dtype", "bytes/token", ...memories.map((m) => `tokens in ${m.title}`)]
  const rows = MODELS.flatMap((name) => {
    const c = PRESETS[name]
    // f16 first: the engine's default
    return [...KV_DTYPES].reverse().map((dtype) => [
      name, String(c.numLayers), String(c.numKvHeads), String(c.headDim), dtype, count(kvCapacity(c, dtype, 1, blockSize).bytesPerToken),
      ...memories.map((m) => count(kvCapacity(c, dtype, m.bytes, blockSize).tokens))
    ])
  })
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  const first = memories[0]!
  const ratios = MODELS.map((name) => {
    const f16 = kvCapacity(PRESETS[name], "f16", first.bytes, blockSize).tokens
    const f32 = kvCapacity(PRESETS[name], "f32", first.bytes, blockSize).tokens
    return `${name} ${f32 > 0 ? times(f16 / f32) : "—"}`
  })
  return [
    `KV capacity: a K and a V pool per layer, in whole blocks of ${blockSize} tokens; bytes/token = 2 × layers × KV heads × head dim × element bytes`,
    line(header),
    ...rows.map(line),
    `f16 / f32 tokens at ${first.title}: ${ratios.join(", ")} (whole blocks, so at least 2×)`
  ]
}

export const run = (flags: BenchCapacityFlags) =>
  Effect.gen(function*() {
    const memories: ReadonlyArray<Memory> = Option.match(flags.kvMemory, {
      onNone: () => [
        { title: `${mib(DEFAULT_KV_MEMORY.gpu)} (GPU default)`, bytes: DEFAULT_KV_MEMORY.gpu },
        { title: `${mib(DEFAULT_KV_MEMORY.software)} (software default)`, bytes: DEFAULT_KV_MEMORY.software }
      ],
      onSome: (n) => [{ title: mib(n * 2 ** 20), bytes: n * 2 ** 20 }]
    })
    for (const line of formatCapacity(memories, flags.blockSize)) yield* Console.log(line)
  })
