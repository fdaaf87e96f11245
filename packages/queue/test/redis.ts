/**
 * A real redis-server for a test file: on a free loopback port, with its
 * data in a temporary folder, killed by `timeout` if the test run itself dies
 * (its lifetime is bounded), and stopped and removed by `stop`. `crash` kills
 * it with SIGKILL and `restart` brings it back on the same port from the same
 * folder: with `appendonly`, every acknowledged write is on disk first
 * (appendfsync always), so a crash loses nothing.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { eventually } from "./limits.ts"

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly dir: string
  /** a plain client, for the test's own looks at the data */
  readonly client: () => Redis
  crash(): Promise<void>
  restart(): Promise<void>
  stop(): Promise<void>
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** SIGKILL to the child's whole process group. */
export const killGroup = (child: ChildProcess): void => {
  try {
    process.kill(-child.pid!, "SIGKILL")
  } catch {
    // gone already
  }
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once("exit", () => resolve()))

export const startRedis = async (options: { readonly appendonly?: boolean; readonly lifetimeSeconds: number }): Promise<RedisServer> => {
  const dir = mkdtempSync(join(tmpdir(), "canopy-redis-"))
  const port = await freePort()
  const args = [
    "-s", "KILL", String(options.lifetimeSeconds), "redis-server",
    "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no",
    ...(options.appendonly === true ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"])
  ]
  let child: ChildProcess
  const clients: Array<Redis> = []
  const launch = async () => {
    // its own process group: a kill reaches redis-server, not only the timeout above it
    child = spawn("timeout", args, { stdio: ["ignore", "pipe", "pipe"], detached: true })
    let output = ""
    child.stdout!.on("data", (d: Buffer) => void (output += d.toString()))
    child.stderr!.on("data", (d: Buffer) => void (output += d.toString()))
    const ready = await eventually(() => output.includes("Ready to accept connections") || child.exitCode !== null, 20_000, 20)
    if (!ready || child.exitCode !== null) throw new Error(`redis-server did not start on port ${port}:\n${output}`)
  }
  await launch()
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    dir,
    client: () => {
      const client = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: null })
      client.on("error", () => {})
      clients.push(client)
      return client
    },
    crash: async () => {
      killGroup(child)
      await exited(child)
    },
    restart: launch,
    stop: async () => {
      for (const c of clients) c.disconnect()
      killGroup(child)
      await exited(child)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
