/**
 * Flags several commands share: the model and the sampling parameters.
 */
import { Option } from "effect"
import { Flag } from "effect/cli"
import { parseIntList } from "../bench/lists.ts"
import { MAX_BATCH_ROWS } from "./bounds.ts"

/** An integer flag ≥ 1 with a default; `max` bounds it where a larger value would only fail later, after allocating. */
export const positiveInt = (name: string, fallback: number, description: string, max = Number.MAX_SAFE_INTEGER) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${description} (default ${fallback}${max < Number.MAX_SAFE_INTEGER ? `, at most ${max}` : ""})`),
    Flag.filter((n) => n >= 1 && n <= max, (n) => (n < 1 ? `--${name} must be at least 1, got ${n}` : `--${name} must be at most ${max}, got ${n}`)),
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

/** Most samples decoding at once that `--max-batch` takes: the engine's own bound (MAX_BATCH_ROWS), refused here before anything is allocated. */
export const MAX_BATCH = MAX_BATCH_ROWS

/**
 * Most MiB `--kv-memory` takes (1 TiB). The engine checks the value against
 * the adapter's memory; this only refuses an absurd one before anything is loaded.
 */
export const MAX_KV_MEMORY_MIB = 1 << 20

/** KV cache size; the engine's default is 256 MiB on a software adapter and 4 GiB on a GPU. */
export const kvMemoryFlag = Flag.Int("kv-memory").pipe(
  Flag.withDescription(`MiB for the KV cache, all layers (default: 4096 on a GPU, 256 on a software adapter; at most ${MAX_KV_MEMORY_MIB}, 1 TiB)`),
  Flag.filter(
    (n) => n >= 1 && n <= MAX_KV_MEMORY_MIB,
    (n) => (n < 1 ? `--kv-memory must be at least 1 MiB, got ${n}` : `--kv-memory must be at most ${MAX_KV_MEMORY_MIB} MiB (1 TiB), got ${n}`)
  ),
  Flag.optional
)

/** KV element type: f16 holds twice the tokens in the same memory; f32 stays for checking against it. */
export const kvDtypeFlag = Flag.Literals("kv-dtype", ["f16", "f32"]).pipe(
  Flag.withDescription("element type of the KV cache: f16 (the default: half the memory, attention still in f32) or f32"),
  Flag.withDefault("f16" as const)
)

/**
 * Weight type of a synthetic model: f16 and bf16 are what checkpoints ship in
 * (half the memory of f32, the values rounded to them). A model folder loads
 * in the dtype its safetensors hold, so with a folder the flag is an error.
 */
export const weightDtypeFlag = Flag.Literals("dtype", ["f32", "f16", "bf16"]).pipe(
  Flag.withDescription("synthetic models: the weights' type, f32 (the default), f16 or bf16 (values rounded to it, half the memory); a model folder loads in the dtype its safetensors hold"),
  Flag.optional
)

/**
 * `--no-tune`: the kernels' default variants, as CANOPY_TUNE=off gives. With
 * tuning on, the first run on an adapter measures the candidates (seconds)
 * and later runs read the choices from the tuning cache.
 */
export const noTuneFlag = Flag.Boolean("no-tune").pipe(
  Flag.withDescription(
    "skip tuning the kernels to this device (CANOPY_TUNE=off does too): their default variants; tuning measures once per adapter and model shape and keeps the choices in tune.json of ~/.cache/canopy ($XDG_CACHE_HOME/canopy where set; CANOPY_CACHE_DIR moves it)"
  ),
  Flag.withDefault(false)
)

/** `--no-overlap`: EngineOptions.overlap false, each decode step read back before the next is planned; the same tokens. */
export const noOverlapFlag = Flag.Boolean("no-overlap").pipe(
  Flag.withDescription(
    "decode stepwise: read each step's tokens back before planning the next (by default the GPU runs one step while the CPU plans the next; the tokens are the same either way)"
  ),
  Flag.withDefault(false)
)

/** How a request's samples share the decode batch; waves stay to compare against. */
export const schedulerFlag = Flag.Literals("scheduler", ["continuous", "waves"]).pipe(
  Flag.withDescription(
    "continuous (the default): a sample's place in the batch refills as soon as it ends; waves: the samples run wave by wave, each wave waiting for its longest sample"
  ),
  Flag.withDefault("continuous" as const)
)

/** The engine's KV options from --kv-memory and --kv-dtype. */
export const kvOptions = (
  mib: Option.Option<number>, kvDtype: "f16" | "f32" = "f16"
): { readonly kvMemoryBytes?: number; readonly kvDtype: "f16" | "f32" } =>
  Option.match(mib, { onNone: () => ({ kvDtype }), onSome: (n) => ({ kvMemoryBytes: n * 2 ** 20, kvDtype }) })

/** The largest seed: the sampler's random stream is keyed by a u32. */
export const MAX_SEED = 0xffffffff

// The ranges are the engine's own (it checks them again), checked here so that a bad value is refused before a model loads.
export const samplingFlags = {
  temperature: Flag.Finite("temperature").pipe(
    Flag.withDescription("0 is greedy (default 0.8)"),
    Flag.filter((t) => t >= 0, (t) => `--temperature must be at least 0 (0 is greedy), got ${t}`),
    Flag.withDefault(0.8)
  ),
  topK: Flag.Int("top-k").pipe(
    Flag.withDescription("keep the k likeliest tokens (default 0: off)"),
    Flag.filter((k) => k >= 0, (k) => `--top-k must be at least 0 (0 is off), got ${k}`),
    Flag.withDefault(0)
  ),
  topP: Flag.Finite("top-p").pipe(
    Flag.withDescription("nucleus sampling mass, in (0, 1] (default 1: off)"),
    Flag.filter((p) => p > 0 && p <= 1, (p) => `--top-p must be in (0, 1] (more than 0, at most 1), got ${p}`),
    Flag.withDefault(1)
  ),
  seed: Flag.Int("seed").pipe(
    Flag.withDescription(`sampling seed, 0 to ${MAX_SEED} (default 0)`),
    Flag.filter((n) => n >= 0 && n <= MAX_SEED, (n) => `--seed must be an integer from 0 to ${MAX_SEED} (2^32 - 1), got ${n}`),
    Flag.withDefault(0)
  ),
  maxTokens: positiveInt("max-tokens", 128, "most tokens per sample")
}

/** `--stop`, repeatable; an empty string would match everywhere, so it is refused. */
export const stopFlag = Flag.String("stop").pipe(
  Flag.withDescription("stop string (repeat the flag for several)"),
  Flag.atLeast(0),
  Flag.filter((stops) => stops.every((s) => s.length > 0), () => `--stop must not be empty: a stop string needs at least one character`)
)
