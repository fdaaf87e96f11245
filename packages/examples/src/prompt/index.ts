export * from "./PromptNode.ts"
export * from "./requests.ts"
export * from "./run.ts"
export * from "./session.ts"
