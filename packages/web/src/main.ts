/**
 * The page: opens the browser's WebGPU device, then decodes the form's
 * prompt tree with the model chosen (the synthetic `tiny`, or a picked
 * Hugging Face folder), drawing the tree as it grows.
 */
import { describeAdapter, type GpuHandle, openWebGpu } from "@canopy/runtime/browser"
import { decodeTree } from "./decode.ts"
import { explainFailure } from "./failure.ts"
import { joinProblems, presetOptions, readSettings } from "./form.ts"
import { pageHook, type PageState } from "./hook.ts"
import { type ModelChoice, openPageModel, type PageModel, pickedFolder } from "./model.ts"
import { DEFAULT_SETTINGS, type PageSettings } from "./settings.ts"
import { TreeView } from "./view.ts"

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T

const form = byId<HTMLFormElement>("tree-form")
const status = byId<HTMLElement>("status")
const figures = byId<HTMLElement>("figures")
const stop = byId<HTMLButtonElement>("stop")
const view = new TreeView(byId("tree"))
const hook = pageHook()

const show = (state: PageState, message: string): void => {
  hook.state = state
  hook.message = message
  status.textContent = message
  status.dataset["state"] = state
  if (state !== "failed") hook.failure = undefined
  form.querySelector<HTMLButtonElement>("button[type=submit]")!.disabled = state === "loading" || state === "decoding"
  stop.disabled = state !== "decoding"
}

const fail = (e: unknown): void => {
  const failure = explainFailure(e)
  show("failed", `${failure.title}: ${failure.detail}`)
  hook.failure = failure.kind
}

const fillForm = (): void => {
  const presets = form.elements.namedItem("preset") as HTMLSelectElement
  for (const { value, label } of presetOptions()) presets.add(new Option(label, value))
  const s = DEFAULT_SETTINGS
  const values: Record<string, string> = {
    fewShot: s.tree.fewShot, problems: joinProblems(s.tree.problems), samples: String(s.tree.samples),
    maxTokens: String(s.sampling.maxTokens), temperature: String(s.sampling.temperature), seed: String(s.sampling.seed),
    preset: s.preset, modelSeed: String(s.modelSeed)
  }
  for (const [name, value] of Object.entries(values)) (form.elements.namedItem(name) as HTMLInputElement).value = value
}

const formValues = (): Record<string, string> =>
  Object.fromEntries([...new FormData(form)].filter((e): e is [string, string] => typeof e[1] === "string"))

/** The model the form asks for, with a key that changes when a different model is chosen. */
const modelChoice = ({ preset, modelSeed }: PageSettings): { readonly choice: ModelChoice; readonly key: string } => {
  const picked = [...byId<HTMLInputElement>("folder").files ?? [], ...byId<HTMLInputElement>("files").files ?? []]
  const fromFiles = (form.elements.namedItem("model") as RadioNodeList).value === "files"
  if (!fromFiles) return { choice: { kind: "synthetic", preset, seed: modelSeed }, key: `synthetic:${preset}:${modelSeed}` }
  const folder = pickedFolder(picked)
  return { choice: { kind: "files", ...folder }, key: picked.map((f) => `${f.name}:${f.size}:${f.lastModified}`).join("|") }
}

let current: { readonly key: string; readonly model: PageModel } | undefined
let running: AbortController | undefined

const modelFor = async (gpu: GpuHandle, choice: ModelChoice, key: string): Promise<PageModel> => {
  if (current?.key === key) return current.model
  current?.model.destroy()
  current = undefined
  const name = choice.kind === "synthetic" ? `the synthetic ${choice.preset} model` : choice.label
  show("loading", `loading ${name}…`)
  const model = await openPageModel(gpu.device, choice, (loaded, total) => show("loading", `loading ${name}: ${loaded} of ${total} tensors`))
  current = { key, model }
  return model
}

const decode = async (gpu: GpuHandle): Promise<void> => {
  // Before the first await: a script that clicked Decode never reads the previous run's state as this one's.
  hook.lastRun = undefined
  running = undefined
  show("loading", "reading the form…")
  const settings = readSettings(formValues())
  const { choice, key } = modelChoice(settings)
  const model = await modelFor(gpu, choice, key)
  running = new AbortController()
  show("decoding", `decoding on ${hook.adapter}…`)
  const keepLogits = new URLSearchParams(location.search).has("logits")
  hook.lastRun = await decodeTree(model, settings, { view, figures: (line) => void (figures.textContent = line) }, { signal: running.signal, keepLogits })
  show("done", `done on ${hook.adapter}`)
}

const start = async (): Promise<void> => {
  fillForm()
  const gpu = await openWebGpu(navigator.gpu)
  hook.adapter = describeAdapter(gpu.adapter)
  show("ready", `ready: ${hook.adapter}`)
  form.addEventListener("submit", (event) => {
    event.preventDefault()
    decode(gpu).catch((e: unknown) => (running?.signal.aborted ? show("stopped", "stopped") : fail(e)))
  })
  stop.addEventListener("click", () => running?.abort())
  // Picking files means decoding with them.
  for (const id of ["folder", "files"]) {
    byId(id).addEventListener("change", () => void ((form.elements.namedItem("model") as RadioNodeList).value = "files"))
  }
  window.addEventListener("pagehide", () => {
    current?.model.destroy()
    gpu.close()
  })
}

start().catch((e: unknown) => {
  // Without a device nothing on the form can run.
  byId<HTMLFieldSetElement>("controls").disabled = true
  fail(e)
})
