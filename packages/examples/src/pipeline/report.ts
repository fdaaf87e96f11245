import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { barChartSvg } from "../charts/svg.ts"
import type { PassAtKSummary } from "./passAtK.ts"

/** The three ways a run decodes the same tree, compared in every report. */
export const MODE_NAMES = {
  tree: "hydragen+tree",
  baseline: "baseline",
  singleLevel: "hydragen+single-level"
} as const

export interface ModeResult {
  readonly name: string
  /** Wall time of the whole mode, prefill and decode. */
  readonly seconds: number
  /** Generated tokens (prompt tokens not counted). */
  readonly tokens: number
  readonly tokensPerSecond: number
  readonly prefillSeconds: number
  readonly decodeSeconds: number
  /** Prompt tokens the mode prefilled; modes differ in how much of the prompt tree they share. */
  readonly prefillTokens?: number
  /** Generated tokens per second of decoding alone. */
  readonly decodeTokensPerSecond?: number
}

export interface RunReport {
  readonly title?: string
  readonly model: string
  /** GPU adapter description as reported by WebGPU. */
  readonly adapter: string
  readonly problems: number
  readonly samplesPerProblem: number
  /** The first mode is the one the summary table describes; the others are compared with it. */
  readonly modes: ReadonlyArray<ModeResult>
  /** Mode that speed-ups are measured against; defaults to "baseline" when present. */
  readonly baselineMode?: string
  readonly passAtK?: PassAtKSummary
  /** Network isolation the evaluator applied, when samples were evaluated. */
  readonly isolation?: string
  readonly samplesPath: string
  /** ISO timestamp of the run's start. */
  readonly startedAt?: string
  /** How the run was set up and what a reader should know to judge its figures. */
  readonly notes?: ReadonlyArray<string>
}

const fixed = (value: number, digits: number): string => Number.isFinite(value) ? value.toFixed(digits) : "—"

const escapeCell = (text: string): string => text.replace(/\|/g, "\\|").replace(/\n/g, " ")

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.map(escapeCell).join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(escapeCell).join(" | ")} |`)
  ].join("\n")

const speedUp = (mode: ModeResult, reference: ModeResult | undefined): string =>
  reference === undefined || mode.seconds <= 0 ? "—" : `${fixed(reference.seconds / mode.seconds, 2)}×`

const percent = (value: number): string => `${fixed(value * 100, 1)}%`

export const THROUGHPUT_CHART_FILE = "throughput.svg"

const hasDecodeFigures = (report: RunReport): boolean =>
  report.modes.length > 0 && report.modes.every((mode) => mode.decodeTokensPerSecond !== undefined)

/** Decode throughput when every mode measured it, otherwise overall throughput. */
export const throughputChartSvg = (report: RunReport): string =>
  barChartSvg({
    title: `Decode throughput — ${report.model}`,
    yLabel: hasDecodeFigures(report) ? "generated tokens / s of decoding" : "generated tokens / s",
    bars: report.modes.map((mode) => ({ label: mode.name, value: mode.decodeTokensPerSecond ?? mode.tokensPerSecond }))
  })

export interface MarkdownOptions {
  /** Relative path of the throughput chart to embed; omitted when no chart was written. */
  readonly throughputChart?: string
}

export const renderReportMarkdown = (report: RunReport, options: MarkdownOptions = {}): string => {
  const main = report.modes[0]
  const referenceName = report.baselineMode ?? MODE_NAMES.baseline
  const reference = report.modes.find((mode) => mode.name === referenceName)
  const sections: Array<string> = [`# ${report.title ?? "Canopy sampling run"}`]

  const facts = [
    `- Model: ${report.model}`,
    `- Adapter: ${report.adapter}`,
    ...(report.startedAt === undefined ? [] : [`- Started: ${report.startedAt}`]),
    `- Samples: \`${report.samplesPath}\``,
    ...(report.isolation === undefined ? [] : [`- Evaluation isolation: ${report.isolation} (see ISOLATION.md)`])
  ]
  sections.push(facts.join("\n"))

  if (main !== undefined) {
    sections.push(
      `## Summary (${main.name})`,
      table(["problems", "samples", "tokens", "time (s)", "tokens/s"], [[
        String(report.problems),
        String(report.problems * report.samplesPerProblem),
        String(main.tokens),
        fixed(main.seconds, 2),
        fixed(main.tokensPerSecond, 1)
      ]])
    )
  }

  if (report.modes.length > 0) {
    sections.push(
      "## Modes",
      table(
        ["mode", "time (s)", "prefill (s)", "decode (s)", "tokens", "tokens/s", `speed-up vs ${referenceName}`],
        report.modes.map((mode) => [
          mode.name,
          fixed(mode.seconds, 2),
          fixed(mode.prefillSeconds, 2),
          fixed(mode.decodeSeconds, 2),
          String(mode.tokens),
          fixed(mode.tokensPerSecond, 1),
          speedUp(mode, reference)
        ])
      )
    )
    if (hasDecodeFigures(report)) {
      sections.push(
        "### Decoding alone",
        table(
          ["mode", "prefill tokens", "decode tokens/s", `decode speed-up vs ${referenceName}`],
          report.modes.map((mode) => [
            mode.name,
            mode.prefillTokens === undefined ? "—" : String(mode.prefillTokens),
            fixed(mode.decodeTokensPerSecond ?? Number.NaN, 1),
            reference === undefined || mode.decodeSeconds <= 0 ? "—" : `${fixed(reference.decodeSeconds / mode.decodeSeconds, 2)}×`
          ])
        )
      )
    }
    if (options.throughputChart !== undefined) {
      sections.push(`![Throughput per mode](${options.throughputChart})`)
    }
  }

  const pass = report.passAtK
  if (pass !== undefined && pass.ks.length > 0) {
    const header = ["problem", "passed / samples", ...pass.ks.map((k) => `pass@${k}`)]
    const rows = [
      ["**all**", `${pass.perProblem.reduce((s, p) => s + p.c, 0)} / ${pass.perProblem.reduce((s, p) => s + p.n, 0)}`, ...pass.overall.map(percent)],
      ...pass.perProblem.map((p) => [p.problemId, `${p.c} / ${p.n}`, ...p.values.map(percent)])
    ]
    sections.push("## pass@k", table(header, rows))
  }

  if (report.notes !== undefined && report.notes.length > 0) {
    sections.push("## Notes", report.notes.map((note) => `- ${note}`).join("\n"))
  }

  return `${sections.join("\n\n")}\n`
}

export interface WrittenReport {
  readonly markdownPath: string
  readonly chartPaths: ReadonlyArray<string>
}

/** Writes report.md and its chart into `dir`, creating it if needed. */
export const writeReport = async (dir: string, report: RunReport): Promise<WrittenReport> => {
  await mkdir(dir, { recursive: true })
  const chartPath = join(dir, THROUGHPUT_CHART_FILE)
  const markdownPath = join(dir, "report.md")
  await writeFile(chartPath, throughputChartSvg(report))
  await writeFile(markdownPath, renderReportMarkdown(report, { throughputChart: THROUGHPUT_CHART_FILE }))
  return { markdownPath, chartPaths: [chartPath] }
}
