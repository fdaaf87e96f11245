export * from "./gpu/index.ts"
export * from "./model/index.ts"
export * from "./attention/index.ts"
export * from "./roofline/index.ts"
