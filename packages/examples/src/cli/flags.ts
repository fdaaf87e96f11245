/**
 * Flags several commands share: the model and the sampling parameters.
 */
import { Option } from "effect"
import { Flag } from "effect/cli"
import { parseIntList } from "../bench/lists.ts"

export const positiveInt = (name: string, fallback: number, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${description} (default ${fallback})`),
    Flag.filter((n) => n >= 1, (n) => `--${name} must be at least 1, got ${n}`),
    Flag.withDefault(fallback)
  )

/** An integer flag with a default. */
export const intFlag = (name: string, fallback: number, description: string) =>
  Flag.Int(name).pipe(Flag.withDescription(description), Flag.withDefault(fallback))

/** A comma-separated list of integers ≥ `min` (`--batch 8,32,64`). */
export const intListFlag = (name: string, fallback: string, min: number, description: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(`${description} (comma-separated)`),
    Flag.withDefault(fallback),
    Flag.mapTryCatch((text) => parseIntList(text, min), (e) => (e instanceof Error ? e.message : String(e)))
  )

export const modelFlag = Flag.String("model").pipe(
  Flag.withDescription("synthetic:PRESET (tiny, codellama-7b, codellama-13b), or a Hugging Face Llama-family folder (config.json, *.safetensors, tokenizer.json); default synthetic:tiny"),
  Flag.withDefault("synthetic:tiny")
)

/** KV cache size; the engine's default is 256 MiB on a software adapter and 4 GiB on a GPU. */
export const kvMemoryFlag = Flag.Int("kv-memory").pipe(
  Flag.withDescription("MiB for the KV cache, all layers (default: 4096 on a GPU, 256 on a software adapter)"),
  Flag.filter((n) => n >= 1, (n) => `--kv-memory must be at least 1 MiB, got ${n}`),
  Flag.optional
)

/** Engine options from --kv-memory. */
export const kvMemoryOption = (mib: Option.Option<number>): { readonly kvMemoryBytes?: number } =>
  Option.match(mib, { onNone: () => ({}), onSome: (n) => ({ kvMemoryBytes: n * 2 ** 20 }) })

export const samplingFlags = {
  temperature: Flag.Finite("temperature").pipe(Flag.withDescription("0 is greedy (default 0.8)"), Flag.withDefault(0.8)),
  topK: Flag.Int("top-k").pipe(Flag.withDescription("keep the k likeliest tokens (default 0: off)"), Flag.withDefault(0)),
  topP: Flag.Finite("top-p").pipe(Flag.withDescription("nucleus sampling mass (default 1: off)"), Flag.withDefault(1)),
  seed: Flag.Int("seed").pipe(Flag.withDescription("sampling seed (default 0)"), Flag.withDefault(0)),
  maxTokens: positiveInt("max-tokens", 128, "most tokens per sample")
}
