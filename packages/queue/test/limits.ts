/**
 * Limits of what the tests wait for, scaled by the run's own setting
 * (CANOPY_TEST_TIMEOUT_SCALE, see vitest.limits.ts at the repository root):
 * a limit ends a hang, a slow machine must not trip it.
 */
import { inject } from "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    readonly timeoutScale: number
  }
}

/** A limit of `ms` on a quiet machine, stretched as this run's setting allows for a slow one. */
export const scaled = (ms: number): number => Math.round(ms * inject("timeoutScale"))

/** Polls `check` until it holds or `ms` (scaled) pass; returns whether it held, so the caller asserts. */
export const eventually = async (check: () => boolean | Promise<boolean>, ms: number, everyMs = 100): Promise<boolean> => {
  const deadline = performance.now() + scaled(ms)
  for (;;) {
    if (await check()) return true
    if (performance.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
