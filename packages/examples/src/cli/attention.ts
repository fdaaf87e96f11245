/**
 * `canopy attention`: the attention oracle. One JSON case on standard input,
 * the result on standard output (see DESIGN.md, "The attention oracle").
 * A stable contract: anyone can check the GPU path against their own reference.
 */
import { Effect } from "effect"
import { Command } from "effect/cli"

export const attentionCommand = Command.make("attention", {}, () =>
  Effect.flatMap(Effect.promise(() => import("./run/attention.ts")), (m) => m.run())
).pipe(
  Command.withDescription(
    "The attention oracle: one JSON case on stdin ({heads, kvHeads, headDim, method?, kvDtype?, nodes, queries}), {out, lse, adapter} on stdout"
  )
)
