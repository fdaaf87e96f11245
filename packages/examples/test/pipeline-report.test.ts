import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { XMLParser, XMLValidator } from "fast-xml-parser"
import { describe, expect, it, onTestFinished } from "vitest"
import { ratioPhrase, speedUpText, spreadOf } from "../src/bench/figures.ts"
import { barChartSvg, barPanelsSvg, formatValue, lineChartSvg, niceTicks } from "../src/charts/svg.ts"
import { summarizePassAtK } from "../src/pipeline/passAtK.ts"
import {
  comparisonChartSvg, MODE_NAMES, PASS_AT_K_CHART_FILE, PREFILL_CHART_FILE, renderReportMarkdown, type RunReport, THROUGHPUT_CHART_FILE,
  writeReport
} from "../src/pipeline/report.ts"
import { formatSamplesJsonl, openSamplesWriter, sampleRecord } from "../src/pipeline/samples.ts"

const parseSvg = (svg: string) => {
  expect(XMLValidator.validate(svg)).toBe(true)
  return new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "" }).parse(svg) as { svg: Record<string, unknown> }
}

interface SvgGroup {
  readonly class?: string
  readonly "data-name"?: string
  readonly g?: SvgGroup | ReadonlyArray<SvgGroup>
}

/** Every <g> of the chart, nested ones included. */
const groupsOf = (svg: string): Array<SvgGroup> => {
  const all: Array<SvgGroup> = []
  const visit = (g: SvgGroup | ReadonlyArray<SvgGroup> | undefined) => {
    if (g === undefined) return
    for (const one of Array.isArray(g) ? g : [g as SvgGroup]) {
      all.push(one)
      visit(one.g)
    }
  }
  visit(parseSvg(svg).svg["g"] as SvgGroup | ReadonlyArray<SvgGroup>)
  return all
}

/** The text of every <text> element, in document order. */
const textsOf = (svg: string): Array<string> =>
  [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"))

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

  it("draws one labelled bar per mode, long names broken at the plus sign", () => {
    const svg = barChartSvg({ title: "Throughput", yLabel: "tokens/s", bars: report.modes.map((m) => ({ label: m.name, value: m.tokensPerSecond })) })
    expect(groupsOf(svg).filter((g) => g.class === "bar").map((g) => g["data-name"])).toEqual([
      "hydragen+tree",
      "baseline",
      "hydragen+single-level"
    ])
    const texts = textsOf(svg)
    expect(texts).toContain("hydragen")
    expect(texts).toContain("+single-level")
    // values in three significant figures, not as many as a float has
    expect(texts).toContain("667")
    expect(texts).not.toContain("666.7")
  })

  it("prints values with consistent precision", () => {
    expect([125.8, 32.31, 26.03, 5.432, 0.04567].map(formatValue)).toEqual(["126", "32.3", "26.0", "5.43", "0.0457"])
  })

  it("ends the picture just below the bar labels", () => {
    const svg = barPanelsSvg({ title: "t", panels: [{ yLabel: "y", bars: [{ label: "a", value: 1 }, { label: "b", value: 2 }] }] })
    const height = Number(/height="(\d+)"/.exec(svg)![1])
    const lowest = Math.max(...[...svg.matchAll(/<text[^>]* y="([\d.]+)"/g)].map((m) => Number(m[1])))
    expect(height - lowest).toBeLessThanOrEqual(16)
  })

  it("draws whiskers for ranges and a dashed reference line", () => {
    const svg = lineChartSvg({
      title: "Speed-up",
      xLabel: "batch",
      yLabel: "×",
      logX: true,
      reference: { y: 1, label: "1× = same speed; below is slower" },
      series: [{ name: "prefix 64", points: [[2, 1.5], [4, 0.8]], ranges: [[2, 1.4, 1.7], [4, 0.7, 0.9]] }]
    })
    expect(groupsOf(svg).filter((g) => g.class === "range")).toHaveLength(2)
    expect(groupsOf(svg).filter((g) => g.class === "reference")).toHaveLength(1)
    expect(textsOf(svg)).toContain("1× = same speed; below is slower")
  })
})

describe("run report", () => {
  it("summarises the run, compares modes against the baseline and tabulates pass@k", () => {
    const markdown = renderReportMarkdown(report, { throughputChart: "throughput.svg" })
    expect(markdown).toContain("| 2 | 20 | 4000 | 2.00 | 2000.0 |")
    expect(markdown).toContain("| hydragen+tree | 2.00 | 0.20 | 1.80 | 4000 | 2000.0 | 3.00× faster |")
    expect(markdown).toContain("| baseline | 6.00 | 1.00 | 5.00 | 4000 | 666.7 | reference |")
    expect(markdown).toContain("| hydragen+single-level | 3.00 | 0.40 | 2.60 | 4000 | 1333.3 | 2.00× faster |")
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
    expect(written.chartPaths).toEqual([join(dir, THROUGHPUT_CHART_FILE)])
    expect(parseSvg(readFileSync(written.chartPaths[0]!, "utf8")).svg["title"]).toBe("Throughput by decoding mode — Canopy sampling run")
  })
})

/** Three timed rounds in which single-level sharing is slower than the baseline overall but faster decoding. */
const rounds: RunReport = {
  ...report,
  title: "Canopy demo",
  workload: "2 problems × 10 samples, at most 20 tokens each, under a 622-character few-shot prompt",
  rounds: 3,
  modes: [
    { ...report.modes[0]!, decodeTokensPerSecond: 2222.2, rounds: [{ seconds: 2, prefillSeconds: 0.2, decodeSeconds: 1.8 }, { seconds: 2.4, prefillSeconds: 0.3, decodeSeconds: 2.1 }, { seconds: 1.5, prefillSeconds: 0.1, decodeSeconds: 1.4 }] },
    { ...report.modes[1]!, decodeTokensPerSecond: 800, rounds: [{ seconds: 6, prefillSeconds: 1, decodeSeconds: 5 }, { seconds: 6, prefillSeconds: 1, decodeSeconds: 5 }, { seconds: 6, prefillSeconds: 1, decodeSeconds: 5 }] },
    {
      ...report.modes[2]!,
      seconds: 7.2,
      prefillSeconds: 3,
      decodeSeconds: 4.2,
      decodeTokensPerSecond: 952.4,
      rounds: [{ seconds: 7.5, prefillSeconds: 3, decodeSeconds: 4.5 }, { seconds: 6.9, prefillSeconds: 2.9, decodeSeconds: 4 }, { seconds: 7.2, prefillSeconds: 3, decodeSeconds: 4.2 }]
    }
  ]
}

describe("speed-ups over rounds", () => {
  it("words a ratio below 1 as slower, and one within rounding of 1 as the same speed", () => {
    expect(speedUpText(2.0714)).toBe("2.07× faster")
    expect(speedUpText(0.86)).toBe("0.86× (1.16× slower)")
    expect(speedUpText(1.001)).toBe("1.00× (same speed)")
    expect(ratioPhrase(spreadOf([0.86, 0.84, 0.88]))).toBe("0.86× (1.16× slower; 0.84–0.88× over 3 rounds)")
    expect(ratioPhrase(spreadOf([2.07, 1.98, 2.15]))).toBe("2.07× faster (1.98–2.15× over 3 rounds)")
    expect(ratioPhrase(spreadOf([1.02, 0.95, 1.1]))).toBe("1.02× faster (0.95–1.10× over 3 rounds: no clear difference)")
    expect(ratioPhrase(spreadOf([2]))).toBe("2.00× faster")
  })

  it("tabulates medians with their range and the per-round speed-ups", () => {
    const markdown = renderReportMarkdown(rounds)
    expect(markdown).toContain("- Timing: 3 timed rounds per mode after an untimed warm-up of each")
    // per-round ratios 6/7.5, 6/6.9, 6/7.2: median 0.833
    expect(markdown).toContain("| hydragen+single-level | 7.20 (6.90–7.50) | 3.00 (2.90–3.00) | 4.20 (4.00–4.50) | 4000 | 1333.3 | 0.83× (1.20× slower; 0.80–0.87×) |")
    expect(markdown).toContain("| hydragen+tree | 2.00 (1.50–2.40) | 0.20 (0.10–0.30) | 1.80 (1.40–2.10) | 4000 | 2000.0 | 3.00× faster (2.50–4.00×) |")
    // decoding: 5/4.5, 5/4, 5/4.2
    expect(markdown).toContain("| hydragen+single-level | — | 952.4 | 1.19× faster (1.11–1.25×) |")
  })

  it("charts the whole run and decoding, each bar captioned with its speed-up, the adapter and work in the subtitle", () => {
    const svg = comparisonChartSvg(rounds)
    const groups = groupsOf(svg)
    expect(groups.filter((g) => g.class === "panel").map((g) => g["data-name"])).toEqual(["Whole run (prefill + decode)", "Decoding alone"])
    expect(groups.filter((g) => g.class === "bar")).toHaveLength(6)
    expect(groups.filter((g) => g.class === "range")).toHaveLength(6)
    const texts = textsOf(svg)
    for (const caption of ["3.00× faster", "reference", "1.19× faster"]) expect(texts).toContain(caption)
    // a slowdown's caption takes two lines, ratio then its wording
    expect(texts.join(" ")).toContain("0.83× (1.20× slower)")
    expect(texts.some((t) => t.includes("faster") && t.startsWith("0."))).toBe(false)
    expect(texts).toContain("NVIDIA H100 · SmolLM2-135M <q4>")
    expect(texts).toContain("2 problems × 10 samples, at most 20 tokens each, under a 622-character few-shot prompt")
    expect(texts.some((t) => t.startsWith("Medians of 3 timed rounds after a warm-up"))).toBe(true)
  })
})

describe("single-run report", () => {
  const single: RunReport = {
    ...report,
    modes: [{ ...report.modes[0]!, promptTokens: 14_000, prefillTokens: 1_100 }],
    timeline: [[0, 0], [0.2, 0], [0.5, 900], [1, 2200], [2, 4000]]
  }

  it("charts tokens/s over the run, the prefill sharing saved and pass@k per problem", async () => {
    const dir = mkdtempSync(join(tmpdir(), "canopy-report-"))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const written = await writeReport(dir, single)
    expect(written.chartPaths).toEqual([THROUGHPUT_CHART_FILE, PREFILL_CHART_FILE, PASS_AT_K_CHART_FILE].map((f) => join(dir, f)))
    const [throughput, prefill, passAtK] = written.chartPaths.map((path) => readFileSync(path, "utf8"))
    expect(parseSvg(throughput!).svg["title"]).toBe("Tokens/s over the run — hydragen+tree")
    expect(textsOf(throughput!)).toContain("seconds since the run started")
    expect(textsOf(prefill!)).toContain("1,100 (92.1% saved)")
    expect(textsOf(prefill!)).toContain("Sharing the prompt tree saved 92.1% of the prefill")
    const passTexts = textsOf(passAtK!)
    for (const label of ["pass@1", "pass@5", "pass@10", "a|b", "c", "all problems"]) expect(passTexts).toContain(label)
    const markdown = readFileSync(written.markdownPath, "utf8")
    expect(markdown).toContain("![Tokens/s over the run](throughput.svg)")
    expect(markdown).toContain("![Prompt tokens prefilled](prefill.svg)")
    expect(markdown).toContain("![pass@k per problem](pass-at-k.svg)")
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
