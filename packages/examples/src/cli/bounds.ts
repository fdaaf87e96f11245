/**
 * The libraries' bounds and defaults that the commands' flags and help text
 * show. They are copies: importing them from @canopy/runtime, @canopy/server
 * or @canopy/queue would load the kernels (or Redis's client) for every
 * `--help`, which must start at once. startup.test.ts checks each copy
 * against the library's own value.
 */

/** @canopy/runtime MAX_REQUEST_SAMPLES: samples in one request's tree. */
export const MAX_REQUEST_SAMPLES = 1_000_000

/** @canopy/runtime MAX_TREE_DEPTH: how deep a prompt tree nests. */
export const MAX_TREE_DEPTH = 10_000

/** @canopy/runtime MAX_BATCH_ROWS: samples decoding at once. */
export const MAX_BATCH_ROWS = 65_536

/** @canopy/runtime PRESET_NAMES: the synthetic models. */
export const PRESET_NAMES: ReadonlyArray<string> = ["tiny", "codellama-7b", "codellama-13b"]

/** @canopy/server DEFAULTS, those the flags of `canopy serve` show. */
export const SERVER_DEFAULTS = { host: "127.0.0.1", port: 8000, maxWaiting: 64, concurrency: 64, maxBodyBytes: 2 ** 20 } as const

/** @canopy/queue MAX_RUN_SAMPLES: samples in one distributed run. */
export const MAX_RUN_SAMPLES = 10_000_000

/** @canopy/queue DEFAULT_GRACE_MS: how long a stopped worker's jobs get to finish. */
export const DEFAULT_GRACE_MS = 30_000

/** The engine's default tokens per KV block (bench/kvCapacity.ts DEFAULT_BLOCK_SIZE). */
export const DEFAULT_BLOCK_SIZE = 16
