export * from "./gpu/index.ts"
