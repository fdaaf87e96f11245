/**
 * Typed errors of the engine, each saying what was wrong and by how much.
 */
import { Data } from "effect"

/** The request can never fit in the KV pool, even one sample at a time. */
export class EngineCapacityError extends Data.TaggedError("EngineCapacityError")<{
  readonly neededBlocks: number
  readonly capacityBlocks: number
  readonly blockSize: number
  readonly reason: string
}> {
  override get message(): string {
    return `${this.reason}: needs ${this.neededBlocks} KV blocks of ${this.blockSize} tokens, the pool has ${this.capacityBlocks}`
  }
}

/** A sampling parameter out of range. */
export class InvalidSampling extends Data.TaggedError("InvalidSampling")<{
  readonly field: string
  readonly problem: string
}> {
  override get message(): string {
    return `sampling ${this.field}: ${this.problem}`
  }
}

/** The model produced NaN or infinite logits: its weights or activations are broken, and any token drawn from them would be noise. */
export class NonFiniteLogits extends Data.TaggedError("NonFiniteLogits")<{
  /** the prompt-tree node (child indices) and sample whose row it was */
  readonly path: ReadonlyArray<number>
  readonly sample: number
  readonly position: number
}> {
  override get message(): string {
    return `the model's logits are not finite (NaN or ±∞) for sample ${this.sample} of node [${this.path.join(", ")}] at position ${this.position}: its weights or activations overflow or are NaN, so no token can be drawn`
  }
}

/** A prompt plus the tokens to generate runs past the positions the model was trained for. */
export class ContextTooLong extends Data.TaggedError("ContextTooLong")<{
  readonly path: ReadonlyArray<number>
  readonly promptTokens: number
  readonly maxTokens: number
  readonly maxPositions: number
}> {
  override get message(): string {
    return `node [${this.path.join(", ")}]: a prompt of ${this.promptTokens} tokens plus up to ${this.maxTokens} new tokens exceeds the model's ${this.maxPositions} positions (max_position_embeddings); shorten the prompt or lower maxTokens to ${Math.max(0, this.maxPositions - this.promptTokens)}`
  }
}

/** An engine option out of its range, found before anything is allocated. */
export class InvalidEngineOptions extends Data.TaggedError("InvalidEngineOptions")<{
  readonly field: string
  readonly problem: string
}> {
  override get message(): string {
    return `engine option ${this.field}: ${this.problem}`
  }
}

/** The device could not allocate the KV cache asked for. */
export class KvCacheOutOfMemory extends Data.TaggedError("KvCacheOutOfMemory")<{
  readonly askedBytes: number
  readonly layers: number
  readonly detail: string
}> {
  override get message(): string {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`
    return `the KV cache asked the device for ${gib(this.askedBytes)} (a K and a V pool for each of ${this.layers} layers) and the device could not allocate it (${this.detail}); give it less memory: kvMemoryBytes, or --kv-memory MiB on the command line`
  }
}
