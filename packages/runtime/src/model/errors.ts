/**
 * Typed errors of model loading. Each names the file, field or tensor at fault.
 */
import { Data } from "effect"

/** config.json is missing a field, has a wrong type, or asks for something unsupported. */
export class ModelConfigError extends Data.TaggedError("ModelConfigError")<{
  readonly field: string
  readonly reason: string
}> {
  override get message(): string {
    return `config.json: ${this.field}: ${this.reason}`
  }
}

/** A safetensors file (or index) that is truncated, malformed or hostile. */
export class SafetensorsError extends Data.TaggedError("SafetensorsError")<{
  readonly file: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.file}: ${this.reason}`
  }
}

/** A tensor stored in a dtype other than F32, F16 or BF16. */
export class UnsupportedDtype extends Data.TaggedError("UnsupportedDtype")<{
  readonly file: string
  readonly tensor: string
  readonly dtype: string
}> {
  override get message(): string {
    return `${this.file}: tensor ${this.tensor} has dtype ${this.dtype}; supported: F32, F16, BF16`
  }
}

/** A tensor the architecture needs is absent, or its shape disagrees with config.json. */
export class TensorShapeMismatch extends Data.TaggedError("TensorShapeMismatch")<{
  readonly tensor: string
  readonly expected: ReadonlyArray<number>
  /** undefined when the tensor is missing */
  readonly actual: ReadonlyArray<number> | undefined
}> {
  override get message(): string {
    return this.actual === undefined
      ? `tensor ${this.tensor} (shape [${this.expected.join(", ")}]) is missing`
      : `tensor ${this.tensor}: expected shape [${this.expected.join(", ")}], found [${this.actual.join(", ")}]`
  }
}

/** A file of the model folder could not be read. */
export class ModelFileError extends Data.TaggedError("ModelFileError")<{
  readonly file: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.file}: ${this.reason}`
  }
}

/** tokenizer.json could not be loaded, or text could not be encoded. */
export class TokenizerError extends Data.TaggedError("TokenizerError")<{
  readonly reason: string
}> {
  override get message(): string {
    return this.reason
  }
}

/** A forward batch that does not fit the forward's buffers or is inconsistent. */
export class ForwardBatchError extends Data.TaggedError("ForwardBatchError")<{
  readonly reason: string
}> {
  override get message(): string {
    return this.reason
  }
}

export type ModelLoadError = ModelConfigError | SafetensorsError | UnsupportedDtype | TensorShapeMismatch | ModelFileError | TokenizerError
