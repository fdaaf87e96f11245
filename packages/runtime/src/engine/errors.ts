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
