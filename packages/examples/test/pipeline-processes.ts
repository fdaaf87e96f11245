/**
 * Finding the processes a sampled program starts, from outside its
 * namespaces. Inside a PID namespace a program only knows its own pids, which
 * mean nothing to the host, so the tests tag the processes they care about
 * with a unique token on the command line and look for that token in /proc.
 */
import { randomUUID } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { scaled } from "./limits.ts"

export const uniqueToken = (label: string): string => `canopy-${label}-${randomUUID()}`

export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // A killed child re-parented to a non-reaping init lingers as a zombie: dead for our purposes.
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

/** Host pids of the live processes whose command line contains `token`. */
export const processesWith = (token: string): Array<number> =>
  readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    try {
      return readFileSync(`/proc/${name}/cmdline`, "utf8").includes(token) && isAlive(Number(name)) ? [Number(name)] : []
    } catch {
      return [] // gone between the listing and the read
    }
  })

/**
 * Polls `check` until it holds or a deadline passes (5 s on a quiet machine,
 * scaled for a loaded one); returns whether it held, so the caller asserts.
 */
export const eventually = async (check: () => boolean, ms = 5_000): Promise<boolean> => {
  const deadline = performance.now() + scaled(ms)
  for (;;) {
    if (check()) return true
    if (performance.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Python that starts `python -c code token`, a process the test can find by
 * its token, with `how` as the Popen keyword arguments.
 */
export const startTagged = (token: string, code: string, how = ""): string =>
  `subprocess.Popen([sys.executable, '-c', ${JSON.stringify(code)}, ${JSON.stringify(token)}]${how === "" ? "" : `, ${how}`})`

/** Python for a process that writes `marker` in the working folder every 50 ms, forever. */
export const heartbeat = (marker: string): string =>
  `import time\nwhile True:\n    open(${JSON.stringify(marker)}, 'w').write(str(time.time()))\n    time.sleep(0.05)`

/** Python that waits (bounded) until `marker` exists, then prints whether it does. */
export const awaitMarker = (marker: string): string =>
  [
    "deadline = time.time() + 20",
    `while not os.path.exists(${JSON.stringify(marker)}) and time.time() < deadline:`,
    "    time.sleep(0.02)",
    `print('started' if os.path.exists(${JSON.stringify(marker)}) else 'not started')`
  ].join("\n")
