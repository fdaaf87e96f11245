export * from "./matmulSubgroupMatrix.wgsl.ts"
export * from "./probes.ts"
export * from "./splitF32.ts"
