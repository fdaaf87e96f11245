/**
 * `@canopy/server`: an OpenAI-compatible HTTP server over the Canopy engine.
 */
export * from "./chatTemplate.ts"
export * from "./errors.ts"
export * from "./logprobs.ts"
export * from "./metrics.ts"
export * from "./prompts.ts"
export * from "./requests.ts"
export * from "./scheduler.ts"
export * from "./Server.ts"
export * from "./streamText.ts"
