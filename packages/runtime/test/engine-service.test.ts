import { Deferred, Effect, Exit, Fiber, Layer, ManagedRuntime, Stream } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { Engine, type GenerateEvent } from "../src/Engine.ts"
import { Gpu } from "../src/Gpu.ts"
import { Model } from "../src/Model.ts"

const stack = Engine.layer({ blockSize: 8, kvBlocks: 256 }).pipe(
  Layer.provideMerge(Model.layer({ kind: "synthetic", model: "tiny", seed: 3 })),
  Layer.provideMerge(Gpu.layer())
)
// One device, model and engine for the file: building them (the model's kernels compiled) took most of each test.
const runtime = ManagedRuntime.make(stack)
afterAll(() => runtime.dispose())
const tree = { text: "Once, ", children: [{ text: "a fox", samples: 2 }, { text: "a crow", samples: 1 }] }

describe("the Engine service", () => {
  it("streams tokens, steps and completions, then the result, matching generate", async () => {
    const [events, direct] = await runtime.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        const request = { tree, sampling: { temperature: 0.9, seed: 4, maxTokens: 5 } }
        const events = yield* Stream.runCollect(engine.stream(request))
        const direct = yield* engine.generate(request)
        return [Array.from(events), direct] as const
      })
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
      // the text pieces add up to the completion's text; only a last, incomplete character may still be held
      const text = events.flatMap((e) => (e._tag === "Token" && e.sample === c.sample && e.path.join() === c.path.join() ? [e.text] : [])).join("")
      expect(c.text.startsWith(text)).toBe(true)
      expect(c.text.slice(text.length)).toMatch(/^\uFFFD*$/)
    }
    expect(tags.filter((t) => t === "Step").length).toBe(done.result.stats.steps)
  })

  it("fails with a typed error, in generate and in the stream", async () => {
    const errors = await runtime.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        const bad = { tree, sampling: { topP: 2 } }
        const a = yield* Effect.flip(engine.generate(bad))
        const b = yield* Effect.flip(Stream.runCollect(engine.stream(bad)))
        return [a, b]
      })
    )
    for (const e of errors) {
      expect(e._tag).toBe("InvalidSampling")
      expect((e as { field: string }).field).toBe("topP")
    }
  })
})

describe("interrupting a run", () => {
  it("stops the engine between steps and releases every sequence", async () => {
    const live = await runtime.runPromise(
      Effect.gen(function*() {
        const engine = yield* Engine
        let steps = 0
        const fewSteps = yield* Deferred.make<void>()
        const run = engine.generate({ tree, sampling: { maxTokens: 1000, ignoreEos: true } }, {
          onStep: () => {
            if (++steps === 3) Deferred.doneUnsafe(fewSteps, Exit.void)
          }
        })
        // give up once a few steps have run, counted rather than timed: a slow machine takes longer to reach them
        const fiber = yield* Effect.forkChild(run)
        yield* Deferred.await(fewSteps).pipe(Effect.raceFirst(Fiber.await(fiber)))
        yield* Fiber.interrupt(fiber)
        const outcome = yield* Fiber.await(fiber)
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
      })
    )
    expect(live).toBe(0)
  })
})
