import { Effect, Layer, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { Engine, type GenerateEvent } from "../src/Engine.ts"
import { Gpu } from "../src/Gpu.ts"
import { Model } from "../src/Model.ts"

const stack = Engine.layer({ blockSize: 8, kvBlocks: 256 }).pipe(
  Layer.provideMerge(Model.layer({ kind: "synthetic", model: "tiny", seed: 3 })),
  Layer.provideMerge(Gpu.layer())
)
const tree = { text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }

describe("the Engine service", () => {
  it("streams tokens, steps and completions, then the result, matching generate", async () => {
    const [events, direct] = await Effect.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        const request = { tree, sampling: { temperature: 0.9, seed: 4, maxTokens: 5 } }
        const events = yield* Stream.runCollect(engine.stream(request))
        const direct = yield* engine.generate(request)
        return [Array.from(events), direct] as const
      }).pipe(Effect.provide(stack))
    )
    const tags = (events as ReadonlyArray<GenerateEvent>).map((e) => e._tag)
    expect(tags.at(-1)).toBe("Done")
    expect(tags.filter((t) => t === "Completion")).toHaveLength(3)
    const done = events.at(-1) as Extract<GenerateEvent, { _tag: "Done" }>
    expect(done.result.completions).toEqual(direct.completions)
    // every token of every completion was streamed, in order
    for (const c of done.result.completions) {
      const streamed = events.flatMap((e) => (e._tag === "Token" && e.sample === c.sample && e.path.join() === c.path.join() ? [e.token] : []))
      expect(streamed).toEqual(c.tokens)
    }
    expect(tags.filter((t) => t === "Step").length).toBe(done.result.stats.steps)
  })

  it("fails with a typed error, in generate and in the stream", async () => {
    const errors = await Effect.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        const bad = { tree, sampling: { topP: 2 } }
        const a = yield* Effect.flip(engine.generate(bad))
        const b = yield* Effect.flip(Stream.runCollect(engine.stream(bad)))
        return [a, b]
      }).pipe(Effect.provide(stack))
    )
    for (const e of errors) {
      expect(e._tag).toBe("InvalidSampling")
      expect((e as { field: string }).field).toBe("topP")
    }
  })
})

describe("interrupting a run", () => {
  it("stops the engine between steps and releases every sequence", async () => {
    const live = await Effect.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        let steps = 0
        const run = engine.generate({ tree, sampling: { maxTokens: 1000, ignoreEos: true } }, { onStep: () => void steps++ })
        // give up once a few steps have run
        const outcome = yield* run.pipe(Effect.timeout("1500 millis"), Effect.exit)
        expect(outcome._tag).toBe("Failure")
        expect(steps).toBeGreaterThan(0)
        // the interruption returned once the engine had stopped: no step runs after it
        const after = steps
        yield* Effect.sleep("300 millis")
        expect(steps).toBe(after)
        // and it is usable again
        const again = yield* engine.generate({ tree, sampling: { maxTokens: 3 } })
        expect(again.completions).toHaveLength(3)
        return engine.engine.kv.tree.stats().liveSequences
      }).pipe(Effect.provide(stack))
    )
    expect(live).toBe(0)
  })
})
