import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { XMLParser, XMLValidator } from "fast-xml-parser"
import { describe, expect, it, onTestFinished } from "vitest"
import { barChartSvg, lineChartSvg, niceTicks } from "../src/charts/svg.ts"
import { summarizePassAtK } from "../src/pipeline/passAtK.ts"
import { MODE_NAMES, renderReportMarkdown, type RunReport, writeReport } from "../src/pipeline/report.ts"
import { formatSamplesJsonl, openSamplesWriter, sampleRecord } from "../src/pipeline/samples.ts"

const parseSvg = (svg: string) => {
  expect(XMLValidator.validate(svg)).toBe(true)
  return new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "" }).parse(svg) as { svg: Record<string, unknown> }
}

const report: RunReport = {
  model: "SmolLM2-135M <q4>",
  adapter: "NVIDIA H100",
  problems: 2,
  samplesPerProblem: 10,
  modes: [
    { name: MODE_NAMES.tree, seconds: 2, tokens: 4000, tokensPerSecond: 2000, prefillSeconds: 0.2, decodeSeconds: 1.8 },
    { name: MODE_NAMES.baseline, seconds: 6, tokens: 4000, tokensPerSecond: 666.7, prefillSeconds: 1, decodeSeconds: 5 },
    { name: MODE_NAMES.singleLevel, seconds: 3, tokens: 4000, tokensPerSecond: 1333.3, prefillSeconds: 0.4, decodeSeconds: 2.6 }
  ],
  passAtK: summarizePassAtK([{ problemId: "a|b", n: 10, c: 3 }, { problemId: "c", n: 10, c: 0 }]),
  isolation: "netns",
  samplesPath: "out/samples.jsonl"
}

describe("charts", () => {
  it("picks round ticks covering the data", () => {
    expect(niceTicks(0, 9.3)).toEqual([0, 2, 4, 6, 8, 10])
    expect(niceTicks(0, 0.37)).toEqual([0, 0.1, 0.2, 0.3, 0.4])
    expect(niceTicks(3, 3).length).toBeGreaterThan(1)
  })

  it("draws a well-formed line chart with every series in plot and legend", () => {
    const svg = lineChartSvg({
      title: "Speed-up vs batch size",
      xLabel: "batch size",
      yLabel: "speed-up (×)",
      logX: true,
      series: [
        { name: "prefix 512", points: [[1, 1], [4, 1.8], [16, 3.1], [64, 5.5]] },
        { name: "prefix 2048 & more", points: [[1, 1.1], [4, 2.6], [16, 6], [64, 11.2]] }
      ]
    })
    const { svg: root } = parseSvg(svg)
    expect(root["xmlns"]).toBe("http://www.w3.org/2000/svg")
    const groups = root["g"] as Array<{ class: string; "data-name"?: string; path?: { d: string } }>
    const series = groups.filter((g) => g.class === "series")
    expect(series.map((g) => g["data-name"])).toEqual(["prefix 512", "prefix 2048 & more"])
    expect(series.every((g) => (g.path?.d.match(/[ML]/g) ?? []).length === 4)).toBe(true)
    expect(svg).toContain("prefix 2048 &amp; more")
    // Log axis labels the batch sizes themselves.
    for (const tick of ["1", "4", "16", "64"]) expect(svg).toContain(`>${tick}</text>`)
    expect(svg).toContain("batch size (log scale)")
  })

  it("survives empty and degenerate input", () => {
    parseSvg(lineChartSvg({ title: "empty", xLabel: "x", yLabel: "y", series: [] }))
    parseSvg(lineChartSvg({ title: "one", xLabel: "x", yLabel: "y", series: [{ name: "s", points: [[2, 2]] }], logX: true }))
    parseSvg(barChartSvg({ title: "none", yLabel: "y", bars: [] }))
  })

  it("draws one labelled bar per mode", () => {
    const svg = barChartSvg({ title: "Throughput", yLabel: "tokens/s", bars: report.modes.map((m) => ({ label: m.name, value: m.tokensPerSecond })) })
    const groups = parseSvg(svg).svg["g"] as Array<{ class: string; "data-name"?: string }>
    expect(groups.filter((g) => g.class === "bar").map((g) => g["data-name"])).toEqual([
      "hydragen+tree",
      "baseline",
      "hydragen+single-level"
    ])
  })
})

describe("run report", () => {
  it("summarises the run, compares modes against the baseline and tabulates pass@k", () => {
    const markdown = renderReportMarkdown(report, { throughputChart: "throughput.svg" })
    expect(markdown).toContain("| 2 | 20 | 4000 | 2.00 | 2000.0 |")
    expect(markdown).toContain("| hydragen+tree | 2.00 | 0.20 | 1.80 | 4000 | 2000.0 | 3.00× |")
    expect(markdown).toContain("| hydragen+single-level | 3.00 | 0.40 | 2.60 | 4000 | 1333.3 | 2.00× |")
    expect(markdown).toContain("| pass@1 | pass@5 | pass@10 |")
    expect(markdown).toContain("| **all** | 3 / 20 | 15.0% | 45.8% | 50.0% |")
    // A pipe in a problem id must not break the table.
    expect(markdown).toContain("| a\\|b | 3 / 10 | 30.0% | 91.7% | 100.0% |")
    expect(markdown).toContain("![Throughput per mode](throughput.svg)")
  })

  it("leaves out pass@k when samples were not evaluated", () => {
    const { passAtK: _, ...unevaluated } = report
    expect(renderReportMarkdown(unevaluated)).not.toContain("pass@")
  })

  it("writes the Markdown and a well-formed throughput chart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-report-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const written = await writeReport(dir, report)
    expect(readFileSync(written.markdownPath, "utf8")).toContain("## Modes")
    const chart = written.chartPaths[0]
    if (chart === undefined) throw new Error("no chart written")
    expect(parseSvg(readFileSync(chart, "utf8")).svg["title"]).toBe("Decode throughput — SmolLM2-135M <q4>")
  })
})

describe("samples JSONL", () => {
  const evaluated = sampleRecord({
    problemId: "p1",
    sample: 0,
    text: "print(1)\n",
    tokens: 4,
    finishReason: "stop",
    evaluation: { passed: false, verdicts: [{ test: 0, verdict: "wrong-answer", seconds: 0.03, detail: "expected" }] }
  })
  const plain = sampleRecord({ problemId: "p1", sample: 1, text: "x", tokens: 1, finishReason: "length" })

  it("records every sample, with verdicts only when evaluated", () => {
    expect(Object.keys(evaluated)).toEqual(["problem_id", "sample", "text", "tokens", "finish_reason", "passed", "verdicts"])
    expect(Object.keys(plain)).toEqual(["problem_id", "sample", "text", "tokens", "finish_reason"])
    const lines = formatSamplesJsonl([evaluated, plain]).trimEnd().split("\n")
    expect(lines.map((line) => JSON.parse(line))).toEqual([evaluated, plain])
  })

  it("streams records to a file in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-samples-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, "nested", "samples.jsonl")
    const writer = await openSamplesWriter(path)
    void writer.write(evaluated)
    void writer.write(plain)
    await writer.close()
    expect(readFileSync(path, "utf8")).toBe(formatSamplesJsonl([evaluated, plain]))
  })
})
