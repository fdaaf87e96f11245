/** One RoPE scaling of each type, as the RoPE tests draw them (dynamic NTK's original context short, so tests reach past it). */
import { type RopeScaling, yarnAttentionFactor } from "../src/model/rope.ts"

export const ROPE_SCALINGS: ReadonlyArray<RopeScaling> = [
  { type: "none" },
  { type: "linear", factor: 4 },
  { type: "dynamic", factor: 2, originalMaxPositions: 64 },
  { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  { type: "yarn", factor: 4, originalMaxPositions: 4096, betaFast: 32, betaSlow: 1, attentionFactor: yarnAttentionFactor(4) }
]
