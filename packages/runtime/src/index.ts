export * from "./Gpu.ts"
export * from "./model/index.ts"
