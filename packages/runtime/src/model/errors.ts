/**
 * Typed errors of model loading. Each names the file, field or tensor at fault.
 */
import { Data } from "effect"

/**
 * config.json is missing a field, has a wrong type, asks for something
 * unsupported, or disagrees with the tensors of the folder.
 */
export class ModelConfigError extends Data.TaggedError("ModelConfigError")<{
  readonly field: string
  readonly reason: string
  /** what the folder's tensors hold that bears on the field, when known */
  readonly tensors?: string | undefined
}> {
  override get message(): string {
    return `config.json: ${this.field}: ${this.reason}${this.tensors === undefined ? "" : `; tensors: ${this.tensors}`}`
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

/**
 * The model folder, or a file in it, is absent, of the wrong kind (a FIFO,
 * socket, device or directory where a regular file belongs), too large, or
 * could not be read.
 */
export class ModelFileError extends Data.TaggedError("ModelFileError")<{
  readonly file: string
  readonly reason: string
  /** for a folder lacking files: each one missing */
  readonly missing?: ReadonlyArray<string> | undefined
}> {
  override get message(): string {
    return `${this.file}: ${this.reason}`
  }
}

/** tokenizer.json could not be loaded, names an unusable special token, or text could not be encoded. */
export class TokenizerError extends Data.TaggedError("TokenizerError")<{
  readonly reason: string
  /** the tokenizer_config.json field at fault, when there is one */
  readonly field?: string | undefined
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
