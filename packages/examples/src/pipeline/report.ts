import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { pairedRatios, ratioPhrase, type Spread, speedUpText, spreadOf, valueWithRange } from "../bench/figures.ts"
import { type Bar, barPanelsSvg, formatValue, hbarChartSvg, lineChartSvg } from "../charts/svg.ts"
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
  /** Prompt tokens summed over samples: what a runtime without sharing would prefill. */
  readonly promptTokens?: number
  /** Generated tokens per second of decoding alone. */
  readonly decodeTokensPerSecond?: number
  /** Each timed round's times, when the mode ran more than once; the figures above are then their medians. */
  readonly rounds?: ReadonlyArray<RoundTimes>
}

export interface RoundTimes {
  readonly seconds: number
  readonly prefillSeconds: number
  readonly decodeSeconds: number
}

export interface RunReport {
  readonly title?: string
  readonly model: string
  /** GPU adapter description as reported by WebGPU. */
  readonly adapter: string
  /** A software adapter (the CPU): times depend on its cores and their load. */
  readonly software?: boolean
  /** The work in a phrase, for chart subtitles: "4 problems × 12 samples, …". */
  readonly workload?: string
  /** Timed rounds of each mode, after an untimed warm-up of each. */
  readonly rounds?: number
  /** A single-mode run's course: generated tokens so far at seconds since its start. */
  readonly timeline?: ReadonlyArray<readonly [number, number]>
  readonly problems: number
  readonly samplesPerProblem: number
  /** The first mode is the one the summary table describes; the others are compared with it. */
  readonly modes: ReadonlyArray<ModeResult>
  /** Mode that speed-ups are measured against; defaults to "baseline" when present. */
  readonly baselineMode?: string
  readonly passAtK?: PassAtKSummary
  /** Isolation every evaluated run had, as `describeIsolation` words it ("network netns, pid pidns, mount readonly"). */
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

type Phase = "seconds" | "decodeSeconds" | "prefillSeconds"

/** A phase's times over the rounds, or the one figure there is. */
export const phaseSpread = (mode: ModeResult, phase: Phase): Spread =>
  spreadOf(mode.rounds !== undefined && mode.rounds.length > 0 ? mode.rounds.map((r) => r[phase]) : [mode[phase]])

/**
 * Reference time over this mode's time: the median of the per-round ratios
 * when both ran in rounds (each round's modes ran back to back), else the
 * ratio of the figures.
 */
export const speedUpSpread = (mode: ModeResult, reference: ModeResult, phase: Phase = "seconds"): Spread =>
  mode.rounds !== undefined && reference.rounds !== undefined && mode.rounds.length === reference.rounds.length && mode.rounds.length > 0
    ? spreadOf(pairedRatios(reference.rounds.map((r) => r[phase]), mode.rounds.map((r) => r[phase])))
    : spreadOf([mode[phase] > 0 ? reference[phase] / mode[phase] : Number.NaN])

const speedUp = (mode: ModeResult, reference: ModeResult | undefined, phase: Phase = "seconds"): string => {
  if (reference === undefined || mode[phase] <= 0) return "—"
  if (mode === reference) return "reference"
  return ratioPhrase(speedUpSpread(mode, reference, phase), { rounds: false })
}

const seconds = (mode: ModeResult, phase: Phase): string => valueWithRange(phaseSpread(mode, phase), 2)

const percent = (value: number): string => `${fixed(value * 100, 1)}%`

export const THROUGHPUT_CHART_FILE = "throughput.svg"
export const PREFILL_CHART_FILE = "prefill.svg"
export const PASS_AT_K_CHART_FILE = "pass-at-k.svg"

const hasDecodeFigures = (report: RunReport): boolean =>
  report.modes.length > 0 && report.modes.every((mode) => mode.decodeTokensPerSecond !== undefined)

/** Adapter, model and work, then how the figures were taken: the lines under a chart's title. */
const chartSubtitle = (report: RunReport, how?: string): Array<string> => [
  `${report.adapter} · ${report.model}`,
  report.workload ?? `${report.problems} problems × ${report.samplesPerProblem} samples`,
  ...(how !== undefined ? [how] : [])
]

const rate = (tokens: number, seconds: number): number => (seconds > 0 ? tokens / seconds : Number.NaN)

/**
 * The comparison of modes: tokens/s over the whole run (prefill + decode) and
 * over decoding alone, each bar captioned with its speed-up on the reference
 * mode and whiskered with its range over the rounds.
 */
export const comparisonChartSvg = (report: RunReport): string => {
  const referenceName = report.baselineMode ?? MODE_NAMES.baseline
  const reference = report.modes.find((mode) => mode.name === referenceName)
  const rounds = report.rounds ?? 1
  const panel = (phase: "seconds" | "decodeSeconds", title: string, yLabel: string) => ({
    title,
    yLabel,
    bars: report.modes.map((mode, i): Bar => {
      const times = phaseSpread(mode, phase)
      const value = rate(mode.tokens, mode[phase])
      const ratio = reference === undefined ? undefined : speedUpSpread(mode, reference, phase)
      // "0.86× (1.16× slower)" is wider than a bar: its two parts go on two lines
      const words = reference === undefined ? [] : mode === reference ? ["reference"] : speedUpText(ratio!.median).split(/ (?=\()/)
      return {
        label: mode.name,
        value,
        ...(times.n > 1 ? { low: rate(mode.tokens, times.max), high: rate(mode.tokens, times.min) } : {}),
        caption: [...words, `${formatValue(value)} tokens/s`],
        strong: words.length,
        colour: i
      }
    })
  })
  const how = rounds > 1
    ? `Medians of ${rounds} timed rounds after a warm-up; whiskers: range over the rounds; speed-ups against ${referenceName}`
    : reference !== undefined ? `One timed run; speed-ups against ${referenceName}` : undefined
  return barPanelsSvg({
    title: `Throughput by decoding mode — ${report.title ?? "Canopy sampling run"}`,
    subtitle: chartSubtitle(report, how),
    panels: [
      panel("seconds", "Whole run (prefill + decode)", "generated tokens / s of the run"),
      ...(hasDecodeFigures(report) ? [panel("decodeSeconds", "Decoding alone", "generated tokens / s of decoding")] : [])
    ]
  })
}

/** Tokens/s over a single run, in windows of about a twentieth of it: the start's flat part is prefill. */
export const timelineChartSvg = (report: RunReport): string => {
  const timeline = report.timeline ?? []
  const end = timeline.length > 0 ? timeline[timeline.length - 1]![0] : 0
  const windows = Math.max(1, Math.min(20, timeline.length - 1))
  const width = end / windows
  const points: Array<readonly [number, number]> = []
  for (let w = 0; w < windows && width > 0; w++) {
    const from = w * width
    const to = from + width
    // tokens at a time: the last count reached by then
    const at = (t: number) => timeline.reduce((n, [s, tokens]) => (s <= t ? tokens : n), 0)
    points.push([Number(((from + to) / 2).toFixed(3)), (at(to) - at(from)) / width])
  }
  const main = report.modes[0]
  const mean = main === undefined ? "" : ` · ${formatValue(main.tokensPerSecond)} tokens/s over the run, ${formatValue(main.decodeTokensPerSecond ?? Number.NaN)} while decoding`
  return lineChartSvg({
    title: `Tokens/s over the run — ${main?.name ?? "run"}`,
    subtitle: chartSubtitle(report, `One run, not warmed up: the flat start is engine setup and prefill${mean}`),
    xLabel: "seconds since the run started",
    yLabel: "generated tokens / s",
    legend: false,
    series: [{ name: main?.name ?? "run", points }]
  })
}

const count = (n: number): string => (Number.isFinite(n) ? n.toLocaleString("en-US") : "—")

/** Prompt tokens each sample's prompt would need prefilled on its own, against what sharing the tree prefilled. */
export const prefillChartSvg = (report: RunReport): string => {
  const main = report.modes[0]
  const without = main?.promptTokens ?? Number.NaN
  const prefilled = main?.prefillTokens ?? Number.NaN
  const saved = without > 0 ? 1 - prefilled / without : Number.NaN
  return barPanelsSvg({
    title: "Prompt tokens prefilled: each sample alone vs the shared tree",
    subtitle: chartSubtitle(report, `Sharing the prompt tree saved ${Number.isFinite(saved) ? `${(100 * saved).toFixed(1)}%` : "—"} of the prefill`),
    width: 640,
    plotHeight: 200,
    panels: [{
      yLabel: "prompt tokens",
      bars: [
        { label: "each sample alone", value: without, caption: [count(without)], colour: 3 },
        { label: `${main?.name ?? "run"}`, value: prefilled, caption: [`${count(prefilled)} (${Number.isFinite(saved) ? `${(100 * saved).toFixed(1)}% saved` : "—"})`], colour: 0 }
      ]
    }]
  })
}

/** pass@k of each problem, a bar per k, after the figures over all problems. */
export const passAtKChartSvg = (report: RunReport): string => {
  const pass = report.passAtK!
  const row = (label: string, values: ReadonlyArray<number>) => ({
    label,
    bars: pass.ks.map((_, i) => ({ value: values[i] ?? 0, caption: percent(values[i] ?? 0), colour: i }))
  })
  return hbarChartSvg({
    title: "pass@k per problem",
    subtitle: chartSubtitle(report, `${pass.perProblem.reduce((n, p) => n + p.c, 0)} of ${pass.perProblem.reduce((n, p) => n + p.n, 0)} samples passed every test`),
    xLabel: "chance that one of k samples passes (%)",
    legend: pass.ks.map((k, i) => ({ name: `pass@${k}`, colour: i })),
    rows: [row("all problems", pass.overall), ...pass.perProblem.map((p) => row(p.problemId, p.values))],
    xMax: 1,
    tick: (v) => `${Math.round(v * 100)}`
  })
}

/** The throughput chart a report shows: the comparison of modes, or a single run's course. */
export const throughputChartSvg = (report: RunReport): string =>
  report.modes.length > 1 || report.timeline === undefined ? comparisonChartSvg(report) : timelineChartSvg(report)

export interface MarkdownOptions {
  /** Relative path of the throughput chart to embed; omitted when no chart was written. */
  readonly throughputChart?: string
  /** Relative paths of the single-run charts, when written. */
  readonly prefillChart?: string
  readonly passAtKChart?: string
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
    ...(report.isolation === undefined ? [] : [`- Evaluation isolation: ${report.isolation} (see ISOLATION.md)`]),
    ...(report.rounds === undefined
      ? []
      : [`- Timing: ${report.rounds} timed round${report.rounds === 1 ? "" : "s"} per mode after an untimed warm-up of each; figures are medians, brackets the range over the rounds`])
  ]
  sections.push(facts.join("\n"))

  if (main !== undefined) {
    sections.push(
      `## Summary (${main.name})`,
      table(["problems", "samples", "tokens", "time (s)", "tokens/s"], [[
        String(report.problems),
        String(report.problems * report.samplesPerProblem),
        String(main.tokens),
        seconds(main, "seconds"),
        fixed(main.tokensPerSecond, 1)
      ]])
    )
  }

  if (report.modes.length > 0) {
    sections.push(
      "## Modes",
      table(
        ["mode", "time (s)", "prefill (s)", "decode (s)", "tokens", "tokens/s", ...(reference !== undefined ? [`speed-up vs ${referenceName}`] : [])],
        report.modes.map((mode) => [
          mode.name,
          seconds(mode, "seconds"),
          seconds(mode, "prefillSeconds"),
          seconds(mode, "decodeSeconds"),
          String(mode.tokens),
          fixed(mode.tokensPerSecond, 1),
          ...(reference !== undefined ? [speedUp(mode, reference)] : [])
        ])
      )
    )
    if (hasDecodeFigures(report)) {
      sections.push(
        "### Decoding alone",
        table(
          ["mode", "prefill tokens", "decode tokens/s", ...(reference !== undefined ? [`decode speed-up vs ${referenceName}`] : [])],
          report.modes.map((mode) => [
            mode.name,
            mode.prefillTokens === undefined ? "—" : String(mode.prefillTokens),
            fixed(mode.decodeTokensPerSecond ?? Number.NaN, 1),
            ...(reference !== undefined ? [speedUp(mode, reference, "decodeSeconds")] : [])
          ])
        )
      )
    }
    if (options.throughputChart !== undefined) {
      sections.push(`![${report.modes.length > 1 ? "Throughput per mode" : "Tokens/s over the run"}](${options.throughputChart})`)
    }
    if (options.prefillChart !== undefined) sections.push(`![Prompt tokens prefilled](${options.prefillChart})`)
  }

  const pass = report.passAtK
  if (pass !== undefined && pass.ks.length > 0) {
    const header = ["problem", "passed / samples", ...pass.ks.map((k) => `pass@${k}`)]
    const rows = [
      ["**all**", `${pass.perProblem.reduce((s, p) => s + p.c, 0)} / ${pass.perProblem.reduce((s, p) => s + p.n, 0)}`, ...pass.overall.map(percent)],
      ...pass.perProblem.map((p) => [p.problemId, `${p.c} / ${p.n}`, ...p.values.map(percent)])
    ]
    sections.push("## pass@k", table(header, rows))
    if (options.passAtKChart !== undefined) sections.push(`![pass@k per problem](${options.passAtKChart})`)
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

/**
 * Writes report.md and its charts into `dir`, creating it if needed: the
 * comparison of modes, or for a single run its tokens/s over time, the
 * prefill sharing saved and, when evaluated, pass@k per problem.
 */
export const writeReport = async (dir: string, report: RunReport): Promise<WrittenReport> => {
  await mkdir(dir, { recursive: true })
  const single = report.modes.length === 1 && report.timeline !== undefined
  const charts: Array<[file: string, svg: string]> = [[THROUGHPUT_CHART_FILE, throughputChartSvg(report)]]
  if (single && report.modes[0]?.promptTokens !== undefined) charts.push([PREFILL_CHART_FILE, prefillChartSvg(report)])
  if (single && report.passAtK !== undefined && report.passAtK.ks.length > 0) charts.push([PASS_AT_K_CHART_FILE, passAtKChartSvg(report)])
  for (const [file, svg] of charts) await writeFile(join(dir, file), svg)
  const written = new Set(charts.map(([file]) => file))
  const markdownPath = join(dir, "report.md")
  await writeFile(markdownPath, renderReportMarkdown(report, {
    throughputChart: THROUGHPUT_CHART_FILE,
    ...(written.has(PREFILL_CHART_FILE) ? { prefillChart: PREFILL_CHART_FILE } : {}),
    ...(written.has(PASS_AT_K_CHART_FILE) ? { passAtKChart: PASS_AT_K_CHART_FILE } : {})
  }))
  return { markdownPath, chartPaths: charts.map(([file]) => join(dir, file)) }
}
