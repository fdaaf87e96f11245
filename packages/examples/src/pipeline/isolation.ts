import { spawnSync } from "node:child_process"

/**
 * How a program's network is cut off. "netns" is a fresh network namespace
 * (only a downed loopback); "netns-userns" gets one through an unprivileged
 * user namespace; "none" means the program shares the host's network.
 */
export type NetworkIsolation = "netns" | "netns-userns" | "none"

export interface Isolation {
  readonly network: NetworkIsolation
  /** Command prefix that applies the network isolation, e.g. ["unshare", "-n"]. */
  readonly prefix: ReadonlyArray<string>
  /** Why the stronger options were not used, for the run record. */
  readonly note: string
}

const CANDIDATES: ReadonlyArray<{ readonly network: NetworkIsolation; readonly prefix: ReadonlyArray<string> }> = [
  { network: "netns", prefix: ["unshare", "--net"] },
  // Without root, a user namespace is needed to be allowed to create the network namespace.
  { network: "netns-userns", prefix: ["unshare", "--map-root-user", "--net"] }
]

const tryPrefix = (prefix: ReadonlyArray<string>): string | undefined => {
  const [command, ...args] = prefix
  if (command === undefined) return "empty prefix"
  const result = spawnSync(command, [...args, "true"], { stdio: ["ignore", "ignore", "pipe"], timeout: 5_000 })
  if (result.error !== undefined) return result.error.message
  if (result.status !== 0) return result.stderr.toString().trim() || `exit ${String(result.status)}`
  return undefined
}

/** Probes once which network isolation this machine permits; falls back to none. */
export const detectIsolation = (): Isolation => {
  const failures: Array<string> = []
  for (const candidate of CANDIDATES) {
    const failure = tryPrefix(candidate.prefix)
    if (failure === undefined) {
      return { ...candidate, note: failures.length === 0 ? "" : failures.join("; ") }
    }
    failures.push(`${candidate.prefix.join(" ")}: ${failure}`)
  }
  return { network: "none", prefix: [], note: failures.join("; ") }
}

export const NO_ISOLATION: Isolation = { network: "none", prefix: [], note: "disabled by configuration" }
