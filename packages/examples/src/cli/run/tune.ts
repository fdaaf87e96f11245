/**
 * The engine's tuning setting from `--no-tune`, with the tuner's progress on
 * standard error (standard output may carry JSON). A choice read from the
 * cache, or tuning off, prints nothing: only measuring does.
 */
import { describeTuneProgress, type TuneOptions } from "@canopy/kernels"
import type { EngineTuning } from "@canopy/runtime"

export const tuneSetting = (noTune: boolean, print: (line: string) => void = (line) => console.error(line)): false | TuneOptions => {
  if (noTune) return false
  const measuring = new Set<string>()
  return {
    onProgress: (e) => {
      if (e._tag === "Started") measuring.add(e.kernel)
      if (measuring.has(e.kernel)) print(describeTuneProgress(e))
    }
  }
}

/** What an engine's kernels run, in one line: `level tile 32x16 (measured), matmul gemv (cached) for decoding / tiled64 (cached) for prefill`. */
export const describeEngineTuning = (t: EngineTuning): string =>
  `level tile ${t.levelTile.name} (${t.levelTile.how}), matmul ${t.matmul.decode.name} (${t.matmul.decode.how}) for decoding / ` +
  `${t.matmul.prefill.name} (${t.matmul.prefill.how}) for prefill`
