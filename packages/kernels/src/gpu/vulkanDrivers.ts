/**
 * The Vulkan drivers Canopy looks for in Node.js, each as the environment the
 * Vulkan loader reads when Dawn creates an instance: the system's own drivers
 * (a GPU's), SwiftShader from Debian's chromium package, and Mesa's lavapipe
 * from the project's cache (scripts/lavapipe.sh) or the system's Mesa; or,
 * where the user set VK_ICD_FILENAMES (or VK_DRIVER_FILES), exactly those.
 *
 * Each instance is made to see one driver only: an instance that sees
 * lavapipe makes it print warnings about its limits on standard error even
 * when another adapter is opened, so no other command pays for its presence.
 *
 * Node's modules are fetched when needed (process.getBuiltinModule), not
 * imported, so that the kernels' barrel loads in a browser page.
 */
import type { AdapterDriver } from "./adapters.ts"

export interface VulkanDriver {
  readonly kind: AdapterDriver
  /** the ICD file(s) to point the loader at; undefined: the loader's own search (or the user's setting, for "user") */
  readonly icd: string | undefined
  /** where Mesa keeps the driver's compiled shaders (the project's lavapipe: next to it), when Canopy chooses */
  readonly shaderCache?: string
}

/** Where Debian's chromium package puts SwiftShader's Vulkan ICD. */
export const SWIFTSHADER_ICD_PATHS: ReadonlyArray<string> = [
  "/usr/lib/chromium/vk_swiftshader_icd.json",
  "/usr/lib/chromium-browser/vk_swiftshader_icd.json",
  "/usr/lib64/chromium/vk_swiftshader_icd.json"
]

/** Mesa's own lavapipe ICDs, where mesa-vulkan-drivers is installed (Dawn rejects Mesa 22's and then lists no adapter for it). */
const SYSTEM_LAVAPIPE_ICD_PATHS: ReadonlyArray<string> = ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "/usr/share/vulkan/icd.d/lvp_icd.json"]

const exists = (path: string): boolean => process.getBuiltinModule("node:fs").existsSync(path)

/**
 * The folder scripts/lavapipe.sh unpacks lavapipe into: CANOPY_LAVAPIPE_DIR,
 * by default .cache/lavapipe in the repository this module sits in (the
 * nearest folder above it with pnpm-workspace.yaml: the same from src/ and
 * from a build in dist/); undefined outside one (a bundle on a GPU machine).
 */
const lavapipeCacheDir = (): string | undefined => {
  const dir = process.env["CANOPY_LAVAPIPE_DIR"]
  if (dir !== undefined && dir !== "") return dir.replace(/\/+$/, "")
  if (!import.meta.url.startsWith("file:")) return undefined
  const { dirname, join } = process.getBuiltinModule("node:path")
  let at = dirname(process.getBuiltinModule("node:url").fileURLToPath(import.meta.url))
  for (let up = dirname(at); up !== at; at = up, up = dirname(at)) {
    if (exists(join(at, "pnpm-workspace.yaml"))) return join(at, ".cache", "lavapipe")
  }
  return undefined
}

/** lavapipe from the project's cache, else the system's Mesa; undefined where neither is there. */
const findLavapipe = (): VulkanDriver | undefined => {
  const dir = lavapipeCacheDir()
  if (dir !== undefined && exists(`${dir}/lvp_icd.json`)) return { kind: "lavapipe", icd: `${dir}/lvp_icd.json`, shaderCache: `${dir}/shader-cache` }
  const system = SYSTEM_LAVAPIPE_ICD_PATHS.find(exists)
  return system === undefined ? undefined : { kind: "lavapipe", icd: system }
}

/** A GPU device node (NVIDIA, or a DRM render node): without one, asking the system's drivers only prints their refusals. */
const hasGpuDeviceNode = (): boolean => {
  const { existsSync, readdirSync } = process.getBuiltinModule("node:fs")
  if (existsSync("/dev/nvidia0") || existsSync("/dev/nvidiactl")) return true
  try {
    return readdirSync("/dev/dri").some((name) => name.startsWith("renderD"))
  } catch {
    return process.platform !== "linux" // elsewhere, just ask the drivers
  }
}

/** The ICD list the user set, if any: it is honoured as it is, with nothing added. */
const userIcds = (): string | undefined => {
  const set = process.env["VK_ICD_FILENAMES"] ?? process.env["VK_DRIVER_FILES"]
  return set === undefined || set === "" ? undefined : set
}

/**
 * The drivers to list adapters from: the user's, when set; otherwise the
 * system's (where a GPU device node exists, or when `askSystem` says to ask
 * anyway), SwiftShader's and lavapipe's, each where found.
 */
export const vulkanDrivers = (askSystem: boolean): ReadonlyArray<VulkanDriver> => {
  const user = userIcds()
  if (user !== undefined) return [{ kind: "user", icd: user }]
  const swiftshader = SWIFTSHADER_ICD_PATHS.find(exists)
  const lavapipe = findLavapipe()
  return [
    ...(askSystem || hasGpuDeviceNode() ? [{ kind: "system" as const, icd: undefined }] : []),
    ...(swiftshader === undefined ? [] : [{ kind: "swiftshader" as const, icd: swiftshader }]),
    ...(lavapipe === undefined ? [] : [lavapipe])
  ]
}

export const describeDriver = (d: VulkanDriver): string =>
  d.kind === "user" ? `VK_ICD_FILENAMES=${d.icd}` : d.kind === "system" ? "the system's Vulkan drivers" : `${d.kind === "swiftshader" ? "SwiftShader" : "lavapipe"} (ICD ${d.icd})`

const ICD_VARIABLES = ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"] as const
let envTurn: Promise<unknown> = Promise.resolve()

/**
 * Runs `make` (which creates a Dawn instance and asks it for adapters) with
 * the loader pointed at `driver` only, then restores the environment. Calls
 * take turns, so concurrent opens never see each other's setting. Mesa keeps
 * lavapipe's compiled shaders in MESA_SHADER_CACHE_DIR, set (where unset) to
 * the project's lavapipe folder so that the project's cache holds them too.
 */
export const withDriver = <A>(driver: VulkanDriver, make: () => Promise<A>): Promise<A> => {
  const run = async (): Promise<A> => {
    // the Vulkan loader complains on stderr when this is unset
    process.env["XDG_RUNTIME_DIR"] ??= "/tmp"
    if (driver.kind === "user") return make()
    const saved = ICD_VARIABLES.map((name) => process.env[name])
    for (const name of ICD_VARIABLES) {
      if (driver.icd === undefined) delete process.env[name]
      else process.env[name] = driver.icd
    }
    if (driver.shaderCache !== undefined) process.env["MESA_SHADER_CACHE_DIR"] ??= driver.shaderCache
    try {
      return await make()
    } finally {
      ICD_VARIABLES.forEach((name, i) => {
        if (saved[i] === undefined) delete process.env[name]
        else process.env[name] = saved[i]
      })
    }
  }
  const turn = envTurn.then(run, run)
  envTurn = turn.catch(() => undefined)
  return turn
}
