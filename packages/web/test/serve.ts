/**
 * A static file server for the built page on a free loopback port, as any
 * static host would serve it: files only from the folder, with their content
 * types, nothing else.
 */
import { readFile, stat } from "node:fs/promises"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { extname, join, normalize, sep } from "node:path"

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml"
}

export interface StaticServer {
  readonly url: string
  close(): Promise<void>
}

/** The file under `root` that a request path names, or undefined for one outside it. */
const fileFor = (root: string, url: string): string | undefined => {
  const pathname = decodeURIComponent(new URL(url, "http://host").pathname)
  const path = normalize(join(root, pathname))
  if (path !== root && !path.startsWith(root + sep)) return undefined
  return pathname.endsWith("/") ? join(path, "index.html") : path
}

export const serveFolder = async (root: string): Promise<StaticServer> => {
  const server: Server = createServer((request, response) => {
    const file = fileFor(root, request.url ?? "/")
    void (async () => {
      if (file === undefined || !(await stat(file).then((s) => s.isFile(), () => false))) {
        response.writeHead(404).end()
        return
      }
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(await readFile(file))
    })().catch(() => response.writeHead(500).end())
  })
  await new Promise<void>((done, failed) => server.once("error", failed).listen(0, "127.0.0.1", () => done()))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((done) => {
      server.closeAllConnections()
      server.close(() => done())
    })
  }
}
