/**
 * `@canopy/runtime/prompt`, the prompt-tree library: build a tree of prompt
 * pieces, ask any node for samples, and get each node's completions back.
 */
export * from "./PromptNode.ts"
export * from "./requests.ts"
export * from "./run.ts"
export * from "./session.ts"
