export * from "./Gpu.ts"
