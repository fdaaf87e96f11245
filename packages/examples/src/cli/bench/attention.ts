/**
 * `canopy bench attention`: Hydragen tree attention against per-sequence paged
 * decoding over a sweep of batch × shared prefix × suffix, with the roofline.
 */
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { intFlag, intListFlag, kvDtypeFlag } from "../flags.ts"

const file = (name: string, description: string) => Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

/** The level kernel's variants (LevelVariant in @canopy/kernels' tiling.ts), named here so that --help loads no kernels. */
const LEVEL_VARIANTS = ["stacked", "flash2"] as const
type LevelVariantName = (typeof LEVEL_VARIANTS)[number]

const parseLevelVariants = (text: string): ReadonlyArray<LevelVariantName> => {
  const names = text.split(",").map((s) => s.trim())
  for (const name of names) {
    if (!(LEVEL_VARIANTS as ReadonlyArray<string>).includes(name)) throw new RangeError(`"${name}" is not a level kernel (${LEVEL_VARIANTS.join(", ")}), in "${text}"`)
  }
  if (new Set(names).size !== names.length) throw new RangeError(`a level kernel is named twice in "${text}"`)
  return names as ReadonlyArray<LevelVariantName>
}

const flags = {
  batch: intListFlag("batch", "8,32,64", 1, "sequences sharing the prefix"),
  prefix: intListFlag("prefix", "256,1024", 1, "shared prefix tokens"),
  suffix: intListFlag("suffix", "32", 0, "tokens of each sequence's own suffix"),
  heads: intFlag("heads", 8, "query heads"),
  kvHeads: intFlag("kv-heads", 1, "KV heads (heads must be a multiple)"),
  headDim: intFlag("head-dim", 64, "head dimension (a multiple of 8)"),
  blockSize: intFlag("block-size", 16, "tokens per KV block"),
  suffixKernel: Flag.Literals("suffix-kernel", ["decode", "level"]).pipe(
    Flag.withDescription("where Hydragen attends each sequence's own suffix: the decode kernel, or the level kernel with one-row tiles"),
    Flag.withDefault("decode")
  ),
  levelVariants: Flag.String("level-variants").pipe(
    Flag.withDescription(
      `Hydragen's level kernels, comma-separated, of ${LEVEL_VARIANTS.join(", ")}: the first gives the hydragen columns, each other runs Hydragen in the same rounds beside it, with its speed-up over the first`
    ),
    Flag.withDefault("flash2,stacked"),
    Flag.mapTryCatch(parseLevelVariants, (e) => (e instanceof Error ? e.message : String(e)))
  ),
  kvDtype: kvDtypeFlag.pipe(
    Flag.withDescription("element type of the KV pools: f16 (the default, the engine's; f32 pools are measured alongside for the ratio) or f32 alone")
  ),
  repeats: intFlag("repeats", 7, "rounds timed per point, at most, each running every method once in rotating order, after a warm-up (the median and range are reported)"),
  roofline: file("roofline", "roofline JSON from `canopy bench roofline --json` (measured now when absent)"),
  json: file("json", "write the report as JSON here (and the chart beside it, .svg)"),
  svg: file("svg", "write the speed-up chart here")
}

export type BenchAttentionFlags = Command.Command.Config.Infer<typeof flags>

export const benchAttentionCommand = Command.make("attention", flags, (input) =>
  Effect.flatMap(Effect.promise(() => import("../run/bench/attention.ts")), (m) => m.run(input))
).pipe(Command.withDescription("Hydragen tree attention vs per-sequence paged decoding: batch × prefix × suffix sweep with roofline, f16 KV against f32"))
