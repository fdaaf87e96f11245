/**
 * What the page decodes with: the engine's options, and the prompt tree and
 * sampling settings the form starts from. The page's test decodes the same
 * tree in Node.js with ENGINE_OPTIONS to compare tokens.
 */
import type { EngineOptions, PresetName } from "@canopy/runtime/browser"

/**
 * Every engine the page builds. The KV cache is given 128 MiB: enough for a
 * few thousand tokens of a small real model, and an allocation a browser's
 * GPU process grants readily (an engine's default is 4 GiB on a GPU).
 */
export const ENGINE_OPTIONS = {
  kvMemoryBytes: 128 * 2 ** 20,
  kvDtype: "f16",
  maxBatch: 256,
  maxPrefillRows: 128
} as const satisfies EngineOptions

/** A prompt tree as the form holds it: one shared prefix, problems below it, samples of each. */
export interface TreeSettings {
  readonly fewShot: string
  readonly problems: ReadonlyArray<string>
  readonly samples: number
}

export interface SamplingSettings {
  readonly maxTokens: number
  /** 0 = greedy */
  readonly temperature: number
  readonly seed: number
}

export interface PageSettings {
  readonly tree: TreeSettings
  readonly sampling: SamplingSettings
  /** the synthetic model, when no folder is picked */
  readonly preset: PresetName
  /** seed of the synthetic model's weights */
  readonly modelSeed: number
}

/** A line holding only this separates two problems in the form. */
export const PROBLEM_SEPARATOR = "---"

export const DEFAULT_SETTINGS: PageSettings = {
  tree: {
    fewShot:
      "Write a Python program for each problem.\n\n" +
      "QUESTION: Print the sum of two integers a and b.\nANSWER:\na, b = map(int, input().split())\nprint(a + b)\n\n" +
      "QUESTION: Print a line reversed.\nANSWER:\nprint(input()[::-1])\n\n",
    problems: [
      "QUESTION: Print the largest of n integers.\nANSWER:\n",
      "QUESTION: Count the vowels in a word.\nANSWER:\n",
      "QUESTION: Print n factorial.\nANSWER:\n"
    ],
    samples: 4
  },
  sampling: { maxTokens: 24, temperature: 0.8, seed: 0 },
  preset: "tiny",
  modelSeed: 0
}
