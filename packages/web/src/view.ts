/**
 * The tree on the page: every prompt node drawn once, with the tokens it
 * adds, and under each node that asks for samples a list that grows as its
 * samples stream in. Text goes in through textContent only: prompts and
 * samples are shown, never parsed as HTML.
 */
import type { FinishReason } from "@canopy/runtime/browser"
import { type DrawnNode, nodesOf } from "./tree.ts"

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] => {
  const e = document.createElement(tag)
  e.className = className
  if (text !== undefined) e.textContent = text
  return e
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

const keyOf = (path: ReadonlyArray<number>): string => path.join(".")

const nodeName = (node: DrawnNode): string => (node.path.length === 0 ? "shared prefix" : `problem ${node.path.map((i) => i + 1).join(".")}`)

interface SampleRow {
  readonly text: HTMLElement
  readonly count: HTMLElement
  tokens: number
}

export class TreeView {
  private readonly samples = new Map<string, HTMLOListElement>()
  private readonly rows = new Map<string, SampleRow>()

  constructor(private readonly container: HTMLElement) {}

  /** Draws the prompt nodes; samples appear as their tokens arrive. */
  draw(root: DrawnNode): void {
    this.samples.clear()
    this.rows.clear()
    const children = new Map<string, HTMLElement>()
    this.container.replaceChildren()
    for (const node of nodesOf(root)) {
      const box = el("li", "node")
      box.dataset["path"] = keyOf(node.path)
      const header = el("div", "node-header")
      header.append(el("span", "node-name", nodeName(node)), el("span", "node-tokens", plural(node.tokens, "token")))
      if (node.samples > 0) header.append(el("span", "node-samples", plural(node.samples, "sample")))
      box.append(header, el("pre", "node-text", node.text))
      if (node.samples > 0) {
        const list = el("ol", "samples")
        this.samples.set(keyOf(node.path), list)
        box.append(list)
      }
      const below = el("ul", "children")
      box.append(below)
      const parent = node.path.length === 0 ? this.container : children.get(keyOf(node.path.slice(0, -1)))!
      parent.append(box)
      children.set(keyOf(node.path), below)
    }
  }

  private row(path: ReadonlyArray<number>, sample: number): SampleRow {
    const key = `${keyOf(path)}#${sample}`
    let row = this.rows.get(key)
    if (row === undefined) {
      const item = el("li", "sample")
      item.dataset["sample"] = String(sample)
      const count = el("span", "sample-tokens", "0 tokens")
      const text = el("span", "sample-text")
      item.append(count, text)
      this.samples.get(keyOf(path))!.append(item)
      row = { text, count, tokens: 0 }
      this.rows.set(key, row)
    }
    return row
  }

  token(path: ReadonlyArray<number>, sample: number, text: string): void {
    const row = this.row(path, sample)
    row.tokens++
    row.count.textContent = plural(row.tokens, "token")
    row.text.textContent += text
  }

  finish(path: ReadonlyArray<number>, sample: number, reason: FinishReason): void {
    const row = this.row(path, sample)
    row.count.textContent = `${plural(row.tokens, "token")} · ${reason}`
    row.text.parentElement!.classList.add("finished")
  }
}
