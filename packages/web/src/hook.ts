/**
 * The page's state as a script can read it (`window.canopyPage`): what the
 * page is doing, the message it shows, the adapter, and the last run's
 * tokens (and logits, with `?logits` in the address). The page's own test
 * reads it through a headless browser; nothing in the page depends on it.
 */
import type { DecodeOutcome } from "./decode.ts"
import type { FailureKind } from "./failure.ts"

export type PageState = "starting" | "ready" | "loading" | "decoding" | "done" | "stopped" | "failed"

export interface PageHook {
  state: PageState
  failure: FailureKind | undefined
  message: string
  adapter: string
  lastRun: DecodeOutcome | undefined
}

declare global {
  interface Window {
    canopyPage: PageHook
  }
}

export const pageHook = (): PageHook => {
  window.canopyPage = { state: "starting", failure: undefined, message: "", adapter: "", lastRun: undefined }
  return window.canopyPage
}
