/**
 * Limits of what the page's tests wait for (a browser, a build, a decode),
 * scaled by the run's setting (CANOPY_TEST_TIMEOUT_SCALE, see vitest.limits.ts
 * at the repository root): a limit ends a hang, a slow machine must not trip it.
 */
import { inject } from "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    readonly timeoutScale: number
  }
}

/** A limit of `ms` on a quiet machine, stretched as this run's setting allows for a slow one. */
export const scaled = (ms: number): number => Math.round(ms * inject("timeoutScale"))
