export * from "./Gpu.ts"
export * from "./model/index.ts"
export * from "./engine/index.ts"
