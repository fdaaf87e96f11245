/**
 * The engine as an Effect service, built on the Gpu and Model services. Its
 * KV cache lives as long as the layer, so prompt nodes prefilled by one
 * request are reused by the next while memory allows.
 */
import type { BlockPoolExhausted } from "@canopy/tree-cache"
import type { GpuBufferTooLarge, GpuDeviceLost, GpuValidationError } from "@canopy/kernels"
import { Context, Data, Effect, Layer, Queue, Stream } from "effect"
import { Gpu } from "./Gpu.ts"
import {
  type Completion, type EngineOptions, type GenerateEvents, type GenerateRequest, type GenerateResult, type LogitsEvent, type StepProgress,
  type TokenEvent, TreeEngine
} from "./engine/Engine.ts"
import type {
  ContextTooLong, EngineCapacityError, InvalidEngineOptions, InvalidSampling, KvCacheOutOfMemory, NonFiniteLogits
} from "./engine/errors.ts"
import type { InvalidPromptTree } from "./engine/PromptTree.ts"
import type { ForwardBatchError } from "./model/errors.ts"
import { Model } from "./Model.ts"

/** A failure nobody could name in advance (a GPU fault, a bug): carries the cause. */
export class EngineFailure extends Data.TaggedError("EngineFailure")<{ readonly cause: unknown }> {
  override get message(): string {
    return this.cause instanceof Error ? this.cause.message : String(this.cause)
  }
}

export type EngineError =
  | InvalidPromptTree
  | InvalidSampling
  | EngineCapacityError
  | ContextTooLong
  | NonFiniteLogits
  | BlockPoolExhausted
  | ForwardBatchError
  | GpuValidationError
  | GpuDeviceLost
  | EngineSetupError

const KNOWN = new Set([
  "InvalidPromptTree", "InvalidSampling", "EngineCapacityError", "ContextTooLong", "NonFiniteLogits", "BlockPoolExhausted", "ForwardBatchError",
  "GpuValidationError", "GpuDeviceLost"
])

const tagOf = (e: unknown): string => (typeof e === "object" && e !== null ? (e as { _tag?: string })._tag ?? "" : "")

const toEngineError = (e: unknown): EngineError => KNOWN.has(tagOf(e)) ? (e as EngineError) : new EngineFailure({ cause: e })

/** What building the engine can fail with: options out of range, or a KV cache the device cannot hold. */
export type EngineSetupError = InvalidEngineOptions | KvCacheOutOfMemory | GpuBufferTooLarge | EngineFailure

const SETUP = new Set(["InvalidEngineOptions", "KvCacheOutOfMemory", "GpuBufferTooLarge"])

const toSetupError = (e: unknown): EngineSetupError => SETUP.has(tagOf(e)) ? (e as EngineSetupError) : new EngineFailure({ cause: e })

/** What a generation stream carries, in order: tokens and steps as they happen, completions as samples end, then the result. */
export type GenerateEvent =
  | ({ readonly _tag: "Token" } & TokenEvent)
  | ({ readonly _tag: "Logits" } & LogitsEvent)
  | { readonly _tag: "Step"; readonly progress: StepProgress }
  | { readonly _tag: "Completion"; readonly completion: Completion }
  | { readonly _tag: "Done"; readonly result: GenerateResult }

export interface EngineService {
  readonly engine: TreeEngine
  generate(request: GenerateRequest, events?: GenerateEvents): Effect.Effect<GenerateResult, EngineError>
  /**
   * The same run as a stream of events, ending with the result. With
   * `logits: true` each decode step's logits come too (a copy per step: to inspect).
   */
  stream(request: GenerateRequest, options?: { readonly logits?: boolean }): Stream.Stream<GenerateEvent, EngineError>
}

export class Engine extends Context.Service<Engine, EngineService>()("@canopy/runtime/Engine") {
  static readonly layer = (options: EngineOptions = {}): Layer.Layer<Engine, EngineSetupError, Gpu | Model> =>
    Layer.effect(
      Engine,
      Effect.gen(function*() {
        const gpu = yield* Gpu
        const model = yield* Model
        const engine = yield* Effect.acquireRelease(
          Effect.tryPromise({ try: () => TreeEngine.create(gpu.device, model, options), catch: toSetupError }),
          (e) => Effect.sync(() => e.destroy())
        )
        // Requests run concurrently: the engine batches every running sample into one decode step.
        const generate = (request: GenerateRequest, events?: GenerateEvents) =>
          Effect.suspend(() => {
            const controller = new AbortController()
            const running = engine.generate(request, events, controller.signal)
            return Effect.tryPromise({ try: () => running, catch: toEngineError }).pipe(
              // An interruption ends the request before the next step, and waits
              // until its sequences are released: nothing it held outlives it.
              Effect.onInterrupt(() =>
                Effect.sync(() => controller.abort()).pipe(Effect.andThen(Effect.promise(() => running.then(() => {}, () => {}))))
              )
            )
          })
        return Engine.of({
          engine,
          generate,
          stream: (request, options) =>
            Stream.callback<GenerateEvent, EngineError>((queue) =>
              Effect.forkScoped(
                generate(request, {
                  ...(options?.logits === true ? { onLogits: (e: LogitsEvent) => void Queue.offerUnsafe(queue, { _tag: "Logits", ...e }) } : {}),
                  onToken: (e) => void Queue.offerUnsafe(queue, { _tag: "Token", ...e }),
                  onStep: (progress) => void Queue.offerUnsafe(queue, { _tag: "Step", progress }),
                  onCompletion: (completion) => void Queue.offerUnsafe(queue, { _tag: "Completion", completion })
                }).pipe(
                  Effect.flatMap((result) => Queue.offer(queue, { _tag: "Done", result })),
                  Effect.andThen(Queue.end(queue)),
                  Effect.catch((error) => Queue.fail(queue, error))
                )
              )
            )
        })
      })
    )
}
