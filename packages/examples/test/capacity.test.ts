/**
 * `canopy bench capacity` and the arithmetic under it, against the pool
 * sizing written out here on its own: 2 pools per layer, each a whole number
 * of blocks of blockSize × kvHeads × headDim elements.
 */
import { PRESETS } from "@canopy/runtime"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { kvCapacity } from "../src/bench/kvCapacity.ts"
import { scaled } from "./limits.ts"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const canopy = (args: ReadonlyArray<string>) =>
  spawnSync("node", ["--import", "tsx", "packages/examples/src/cli/main.ts", ...args], { cwd: root, encoding: "utf8", timeout: scaled(60_000) })

const ELEMENT_BYTES = { f32: 4, f16: 2 } as const

/** Tokens in `memory`: whole blocks in each of the 2·layers pools. */
const tokensFor = (layers: number, kvHeads: number, headDim: number, dtype: "f16" | "f32", memory: number, blockSize: number): number =>
  blockSize * Math.floor(memory / (2 * layers * blockSize * kvHeads * headDim * ELEMENT_BYTES[dtype]))

describe("KV capacity", () => {
  it("is whole blocks of the pools that fit the memory, and f16 holds exactly 2× or 2× plus one block of f32's tokens", () => {
    fc.assert(
      fc.property(
        fc.record({
          numLayers: fc.integer({ min: 1, max: 128 }),
          numKvHeads: fc.integer({ min: 1, max: 64 }),
          headDim: fc.integer({ min: 1, max: 128 }).map((d) => 2 * d),
          memory: fc.integer({ min: 1, max: 2 ** 40 }),
          blockSize: fc.integer({ min: 1, max: 1024 })
        }),
        ({ memory, blockSize, ...model }) => {
          const f16 = kvCapacity(model, "f16", memory, blockSize)
          const f32 = kvCapacity(model, "f32", memory, blockSize)
          expect(f32.tokens).toBe(tokensFor(model.numLayers, model.numKvHeads, model.headDim, "f32", memory, blockSize))
          expect(f16.tokens).toBe(tokensFor(model.numLayers, model.numKvHeads, model.headDim, "f16", memory, blockSize))
          expect(f16.bytesPerToken * 2).toBe(f32.bytesPerToken)
          expect(f32.bytesPerToken).toBe(2 * model.numLayers * model.numKvHeads * model.headDim * 4)
          expect([2 * f32.tokens, 2 * f32.tokens + blockSize]).toContain(f16.tokens)
        }
      ),
      { numRuns: 500 }
    )
  })

  it("at 4 GiB: 4,096 / 8,192 tokens for CodeLlama-7b and 2,608 / 5,232 for CodeLlama-13b (f32 / f16)", () => {
    // 7b: 2 × 32 layers × 32 heads × 128 × 4 B = 1 MiB a token; 13b: 1.5625 MiB, 163 blocks of 16 in f32, 327 in f16
    const at = (name: "codellama-7b" | "codellama-13b", dtype: "f16" | "f32") => kvCapacity(PRESETS[name], dtype, 4 * 2 ** 30).tokens
    expect([at("codellama-7b", "f32"), at("codellama-7b", "f16")]).toEqual([4096, 8192])
    expect([at("codellama-13b", "f32"), at("codellama-13b", "f16")]).toEqual([2608, 5232])
  })

  it("is printed by `canopy bench capacity` for both shapes and dtypes at the GPU and software defaults, and at --kv-memory", () => {
    const r = canopy(["bench", "capacity"])
    expect(r.status, r.stderr).toBe(0)
    const rows = r.stdout.split("\n").filter((l) => l.startsWith("codellama")).map((l) => l.trim().split(/\s{2,}/))
    expect(rows).toEqual([
      ["codellama-7b", "32", "32", "128", "f16", "524,288", "8,192", "512"],
      ["codellama-7b", "32", "32", "128", "f32", "1,048,576", "4,096", "256"],
      ["codellama-13b", "40", "40", "128", "f16", "819,200", "5,232", "320"],
      ["codellama-13b", "40", "40", "128", "f32", "1,638,400", "2,608", "160"]
    ])
    expect(r.stdout).toContain("tokens in 4 GiB (GPU default)")
    expect(r.stdout).toContain("f16 / f32 tokens at 4 GiB (GPU default): codellama-7b 2.00×, codellama-13b 2.01×")
    const custom = canopy(["bench", "capacity", "--kv-memory", "16384"])
    expect(custom.status, custom.stderr).toBe(0)
    expect(custom.stdout).toMatch(/codellama-13b .* f16 .* 20,960\n/)
    const bad = canopy(["bench", "capacity", "--kv-memory", "0"])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain("--kv-memory must be at least 1 MiB")
  })
})
