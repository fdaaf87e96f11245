/**
 * Type-checked with consumer.ts in the new project, never run: the installed
 * declarations carry the packages' real types. Were any of them `any` (a
 * declaration that does not resolve), an expectation below would go unused
 * and tsc would fail.
 */
import { openGpu } from "@canopy/kernels"
import type { SamplingOptions } from "@canopy/runtime"
import { prompt } from "@canopy/runtime/prompt"
import { CanopyServer } from "@canopy/server"
import { BlockPool } from "@canopy/tree-cache"

// @ts-expect-error a block pool's size is a number of blocks
export const pool = new BlockPool({ numBlocks: "many", blockSize: 16 })

// @ts-expect-error the adapter is "auto", "hardware" or "software"
export const gpu = openGpu({ adapter: "quantum" })

// @ts-expect-error a temperature is a number
export const sampling: Partial<SamplingOptions> = { temperature: "hot" }

// @ts-expect-error a piece is text or token ids
export const root = prompt(42)

// @ts-expect-error a port is a number
export const server = CanopyServer.layer({ port: "8000" })
