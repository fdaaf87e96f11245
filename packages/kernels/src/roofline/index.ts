export * from "./bandwidth.ts"
export * from "./matmulRate.ts"
export * from "./roofline.ts"
export { copyWgsl } from "./copy.wgsl.ts"
