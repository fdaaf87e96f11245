/**
 * One decode of the form's tree: the engine's events drawn as they come
 * (tokens under their samples, tokens/s, the KV memory sharing saves), and
 * what the run gave, kept for the page's test hook. The logits of every step
 * are kept only when asked for (reading them back costs a copy per step):
 * the test compares them with Node's where a token differs.
 */
import type { GenerateResult, SamplingOptions } from "@canopy/runtime/browser"
import { describeKv, kvBytesPerToken, kvFigures } from "./memory.ts"
import type { PageModel } from "./model.ts"
import { ENGINE_OPTIONS, type PageSettings } from "./settings.ts"
import { drawnTree, promptTree } from "./tree.ts"
import type { TreeView } from "./view.ts"

export interface SampleTokens {
  readonly path: ReadonlyArray<number>
  readonly sample: number
  readonly tokens: ReadonlyArray<number>
  readonly text: string
}

/** The logits one sample's token was drawn from, at its position in the sequence. */
export interface StepLogits {
  readonly path: ReadonlyArray<number>
  readonly sample: number
  readonly position: number
  readonly logits: ReadonlyArray<number>
}

export interface DecodeOutcome {
  readonly completions: ReadonlyArray<SampleTokens>
  readonly stats: GenerateResult["stats"]
  readonly logits: ReadonlyArray<StepLogits>
}

export interface DecodeDisplay {
  readonly view: TreeView
  /** the tokens/s and memory line */
  readonly figures: (line: string) => void
}

export const samplingOf = (settings: PageSettings): Partial<SamplingOptions> => ({
  maxTokens: settings.sampling.maxTokens,
  temperature: settings.sampling.temperature,
  seed: settings.sampling.seed
})

const rate = (tokens: number, seconds: number): string => `${seconds > 0 ? (tokens / seconds).toFixed(1) : "–"} tokens/s`

export const decodeTree = async (
  { model, engine }: PageModel,
  settings: PageSettings,
  display: DecodeDisplay,
  options: { readonly signal: AbortSignal; readonly keepLogits: boolean }
): Promise<DecodeOutcome> => {
  const tree = promptTree(settings.tree)
  const drawn = drawnTree(tree, model.tokenizer)
  const perToken = kvBytesPerToken(model.config, ENGINE_OPTIONS.kvDtype)
  display.view.draw(drawn)
  display.figures(`prefilling · ${describeKv(kvFigures(drawn, 0, perToken))}`)
  const logits: Array<StepLogits> = []
  const vocab = model.config.vocabSize
  const result = await engine.generate({ tree, sampling: samplingOf(settings) }, {
    onToken: (e) => display.view.token(e.path, e.sample, e.text),
    onCompletion: (c) => display.view.finish(c.path, c.sample, c.finishReason),
    onStep: (p) => display.figures(`${rate(p.generatedTokens, p.elapsedSeconds)} · ${describeKv(kvFigures(drawn, p.generatedTokens, perToken))}`),
    ...(options.keepLogits
      ? {
        onLogits: (e) => e.rows.forEach((row, r) => logits.push({ ...row, logits: Array.from(e.logits.subarray(r * vocab, (r + 1) * vocab)) }))
      }
      : {})
  }, options.signal)
  const s = result.stats
  display.figures(
    `${rate(s.generatedTokens, s.decodeSeconds)} decoding, ${rate(s.generatedTokens, s.totalSeconds)} overall · ` +
      `${s.generatedTokens} tokens in ${s.totalSeconds.toFixed(2)} s · prefilled ${s.prefillTokens} of ${s.promptTokens} prompt tokens · ` +
      describeKv(kvFigures(drawn, s.generatedTokens, perToken))
  )
  return {
    completions: result.completions.map((c) => ({ path: c.path, sample: c.sample, tokens: c.tokens, text: c.text })),
    stats: s,
    logits
  }
}
