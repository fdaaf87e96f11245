export * from "./device.ts"
export * from "./errors.ts"
export * from "./resources.ts"
export * from "./timing.ts"
