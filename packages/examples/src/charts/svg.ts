/**
 * Small self-contained SVG charts for run reports and benchmarks. The charting
 * libraries on npm either need a DOM (d3 selections, Chart.js) or only supply
 * scales, and these charts need nothing beyond axes, ticks and a legend.
 */

export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
  /** [x, low, high]: a whisker at x, the range of repeated measurements */
  readonly ranges?: ReadonlyArray<readonly [number, number, number]>
}

export interface LineChartSpec {
  readonly title: string
  /** smaller lines under the title: what was measured, where */
  readonly subtitle?: ReadonlyArray<string>
  readonly xLabel: string
  readonly yLabel: string
  readonly series: ReadonlyArray<Series>
  /** Logarithmic x axis, for batch sizes and other doubling quantities. Needs x > 0. */
  readonly logX?: boolean
  /** the series' names on the right (default true); off for one series the title names */
  readonly legend?: boolean
  /** a dashed horizontal line, e.g. 1× on a speed-up chart, with its label */
  readonly reference?: { readonly y: number; readonly label: string }
  readonly width?: number
  readonly height?: number
}

export interface Bar {
  /** under the bar; "+" breaks a long mode name into lines ("hydragen" / "+tree") */
  readonly label: string
  readonly value: number
  /** a whisker from low to high: the range of repeated measurements */
  readonly low?: number
  readonly high?: number
  /** lines above the bar; default: the value */
  readonly caption?: ReadonlyArray<string>
  /** how many of the caption's first lines are bold (default: the first, when there are several) */
  readonly strong?: number
  /** palette index (default: the bar's place) */
  readonly colour?: number
  /** consecutive bars with the same group are drawn together over one group label */
  readonly group?: string
}

export interface BarPanel {
  readonly title?: string
  readonly yLabel: string
  readonly bars: ReadonlyArray<Bar>
  /** top of the y axis at least this (e.g. 1 for fractions) */
  readonly yMax?: number
  /** tick labels (default formatTick) */
  readonly tick?: (value: number) => string
}

export interface BarChartSpec {
  readonly title: string
  readonly subtitle?: ReadonlyArray<string>
  readonly yLabel: string
  readonly bars: ReadonlyArray<Bar>
  readonly width?: number
  readonly height?: number
}

export interface HBarRow {
  readonly label: string
  /** drawn one under the other within the row, coloured by their place (or `colour`) */
  readonly bars: ReadonlyArray<{ readonly value: number; readonly caption?: string; readonly colour?: number }>
}

export interface HBarChartSpec {
  readonly title: string
  readonly subtitle?: ReadonlyArray<string>
  readonly xLabel: string
  readonly rows: ReadonlyArray<HBarRow>
  readonly legend?: ReadonlyArray<{ readonly name: string; readonly colour: number }>
  readonly xMax?: number
  readonly tick?: (value: number) => string
  readonly width?: number
}

export interface BarPanelsSpec {
  readonly title: string
  readonly subtitle?: ReadonlyArray<string>
  /** side by side, each with its own y axis */
  readonly panels: ReadonlyArray<BarPanel>
  readonly legend?: ReadonlyArray<{ readonly name: string; readonly colour: number }>
  readonly width?: number
  /** of the plot area; the chart is as tall as its text needs beyond it */
  readonly plotHeight?: number
}

// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', sans-serif"`

export const escapeXml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;")

const round = (value: number): string => String(Math.round(value * 10) / 10)

/** Tick labels: short, no float noise, thousands as k. */
export const formatTick = (value: number): string => {
  if (value === 0) return "0"
  const abs = Math.abs(value)
  if (abs >= 10_000) return `${formatTick(value / 1000)}k`
  return String(Number(value.toPrecision(abs >= 1 ? 6 : 3)))
}

/** Three significant figures, no exponent: 125.8 → "126", 32.31 → "32.3", 0.0456 → "0.0456". */
export const formatValue = (value: number): string => {
  if (!Number.isFinite(value)) return "—"
  const abs = Math.abs(value)
  if (abs >= 100) return value.toFixed(0)
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 1) return value.toFixed(2)
  return String(Number(value.toPrecision(3)))
}

const SUBTITLE_CHARS = 128

/** Title and subtitle lines; returns the markup and the height they take. */
const header = (width: number, title: string, subtitle: ReadonlyArray<string>): { readonly svg: string; readonly height: number } => {
  const lines = subtitle.map((line) => (line.length > SUBTITLE_CHARS ? `${line.slice(0, SUBTITLE_CHARS - 1)}…` : line))
  return {
    svg: [
      `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(title)}</text>`,
      ...lines.map((line, i) =>
        `<text class="subtitle" x="${width / 2}" y="${40 + i * 15}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(line)}</text>`
      )
    ].join("\n"),
    height: 30 + lines.length * 15
  }
}

/** Evenly spaced round ticks (steps of 1, 2 or 5 × 10^j) that cover [min, max]. */
export const niceTicks = (min: number, max: number, target = 5): ReadonlyArray<number> => {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1]
  if (min === max) return niceTicks(min - (min === 0 ? 0 : Math.abs(min) / 2), max + (max === 0 ? 1 : Math.abs(max) / 2), target)
  const rough = (max - min) / target
  const magnitude = 10 ** Math.floor(Math.log10(rough))
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= rough) ?? 10) * magnitude
  const first = Math.floor(min / step)
  const last = Math.ceil(max / step)
  const ticks: Array<number> = []
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)))
  return ticks
}

/** Log-axis ticks: the data's own x values when few (batch sizes read best as-is), else powers of ten. */
const logTicks = (xs: ReadonlyArray<number>): ReadonlyArray<number> => {
  const distinct = [...new Set(xs)].sort((a, b) => a - b)
  if (distinct.length <= 12) return distinct
  const low = Math.floor(Math.log10(distinct[0] ?? 1))
  const high = Math.ceil(Math.log10(distinct[distinct.length - 1] ?? 10))
  const ticks: Array<number> = []
  for (let p = low; p <= high; p++) ticks.push(10 ** p)
  return ticks
}

interface Frame {
  readonly width: number
  readonly height: number
  readonly left: number
  readonly right: number
  readonly top: number
  readonly bottom: number
}

const svgOpen = (width: number, height: number, title: string, headerSvg: string): string =>
  [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    headerSvg
  ].join("\n")

const yAxis = (
  frame: Frame,
  ticks: ReadonlyArray<number>,
  toY: (v: number) => number,
  label: string,
  tick: (value: number) => string = formatTick,
  labelX = 16
): string => {
  const plotRight = frame.width - frame.right
  const lines = ticks.map((t) => {
    const y = round(toY(t))
    return [
      `<line x1="${frame.left}" x2="${plotRight}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${frame.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${escapeXml(tick(t))}</text>`
    ].join("")
  })
  const midY = (frame.top + frame.height - frame.bottom) / 2
  return [
    `<g class="y-axis">`,
    ...lines,
    `<line x1="${frame.left}" x2="${frame.left}" y1="${frame.top}" y2="${frame.height - frame.bottom}" stroke="#333"/>`,
    `<text transform="translate(${labelX} ${round(midY)}) rotate(-90)" text-anchor="middle">${escapeXml(label)}</text>`,
    `</g>`
  ].join("\n")
}

const whisker = (x: number, yLow: number, yHigh: number, colour = "#222"): string => {
  const cap = 5
  return [
    `<g class="range">`,
    `<line x1="${round(x)}" x2="${round(x)}" y1="${round(yLow)}" y2="${round(yHigh)}" stroke="${colour}" stroke-width="1.5"/>`,
    `<line x1="${round(x - cap)}" x2="${round(x + cap)}" y1="${round(yLow)}" y2="${round(yLow)}" stroke="${colour}" stroke-width="1.5"/>`,
    `<line x1="${round(x - cap)}" x2="${round(x + cap)}" y1="${round(yHigh)}" y2="${round(yHigh)}" stroke="${colour}" stroke-width="1.5"/>`,
    `</g>`
  ].join("")
}

/** Line chart with markers, one colour per series, legend on the right. */
export const lineChartSvg = (spec: LineChartSpec): string => {
  const head = header(spec.width ?? 720, spec.title, spec.subtitle ?? [])
  const showLegend = spec.legend ?? true
  const frame: Frame = {
    width: spec.width ?? 720,
    height: (spec.height ?? 420) + head.height - 30,
    left: 64,
    right: showLegend ? 170 : 28,
    top: head.height + 12,
    bottom: 48
  }
  const logX = spec.logX ?? false
  const visibleX = (x: number) => Number.isFinite(x) && (!logX || x > 0)
  const points = spec.series.flatMap((s) => s.points).filter(([x, y]) => visibleX(x) && Number.isFinite(y))
  const ranges = spec.series.flatMap((s) => s.ranges ?? []).filter(([x, lo, hi]) => visibleX(x) && Number.isFinite(lo) && Number.isFinite(hi))
  const xs = points.map(([x]) => x)
  const ys = [...points.map(([, y]) => y), ...ranges.flatMap(([, lo, hi]) => [lo, hi]), ...(spec.reference ? [spec.reference.y] : [])]
  const xTicks = logX ? logTicks(xs) : niceTicks(Math.min(...xs, 0), Math.max(...xs, 1))
  const yTicks = niceTicks(Math.min(0, ...ys), Math.max(...ys, 0) || 1)
  const xScale = (v: number) => logX ? Math.log(v) : v
  const xMin = xScale(xTicks[0] ?? 1)
  const xMax = xScale(xTicks[xTicks.length - 1] ?? 1)
  const yMin = yTicks[0] ?? 0
  const yMax = yTicks[yTicks.length - 1] ?? 1
  const plotWidth = frame.width - frame.left - frame.right
  const plotHeight = frame.height - frame.top - frame.bottom
  const toX = (v: number) => frame.left + (xMax === xMin ? plotWidth / 2 : ((xScale(v) - xMin) / (xMax - xMin)) * plotWidth)
  const toY = (v: number) => frame.top + plotHeight - ((v - yMin) / (yMax - yMin)) * plotHeight
  const baseline = frame.height - frame.bottom

  const xAxis = [
    `<g class="x-axis">`,
    `<line x1="${frame.left}" x2="${frame.width - frame.right}" y1="${baseline}" y2="${baseline}" stroke="#333"/>`,
    ...xTicks.map((tick) => {
      const x = round(toX(tick))
      return `<line x1="${x}" x2="${x}" y1="${baseline}" y2="${baseline + 5}" stroke="#333"/><text x="${x}" y="${baseline + 18}" text-anchor="middle" fill="#333">${escapeXml(formatTick(tick))}</text>`
    }),
    `<text x="${round(frame.left + plotWidth / 2)}" y="${frame.height - 10}" text-anchor="middle">${escapeXml(spec.xLabel)}${logX ? " (log scale)" : ""}</text>`,
    `</g>`
  ].join("\n")

  const reference = spec.reference === undefined ? "" : (() => {
    const y = round(toY(spec.reference.y))
    return [
      `<g class="reference">`,
      `<line x1="${frame.left}" x2="${frame.width - frame.right}" y1="${y}" y2="${y}" stroke="#777" stroke-dasharray="5 4"/>`,
      `<text x="${frame.width - frame.right - 4}" y="${round(toY(spec.reference.y) - 5)}" text-anchor="end" font-size="11" fill="#555">${escapeXml(spec.reference.label)}</text>`,
      `</g>`
    ].join("")
  })()

  const seriesSvg = spec.series.map((series, index) => {
    const colour = PALETTE[index % PALETTE.length] ?? "#000000"
    const visible = series.points.filter(([x, y]) => visibleX(x) && Number.isFinite(y)).slice().sort((a, b) => a[0] - b[0])
    const path = visible.map(([x, y], i) => `${i === 0 ? "M" : "L"}${round(toX(x))} ${round(toY(y))}`).join(" ")
    const markers = visible.map(([x, y]) => `<circle cx="${round(toX(x))}" cy="${round(toY(y))}" r="3" fill="${colour}"/>`).join("")
    const whiskers = (series.ranges ?? [])
      .filter(([x, lo, hi]) => visibleX(x) && Number.isFinite(lo) && Number.isFinite(hi))
      .map(([x, lo, hi]) => whisker(toX(x), toY(lo), toY(hi), colour))
      .join("")
    return [
      `<g class="series" data-name="${escapeXml(series.name)}">`,
      path === "" ? "" : `<path d="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`,
      markers,
      whiskers,
      `</g>`
    ].join("\n")
  })

  const legendX = frame.width - frame.right + 16
  const legend = !showLegend ? "" : [
    `<g class="legend">`,
    ...spec.series.map((series, index) => {
      const colour = PALETTE[index % PALETTE.length] ?? "#000000"
      const y = frame.top + 8 + index * 20
      return `<line x1="${legendX}" x2="${legendX + 18}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2"/><circle cx="${legendX + 9}" cy="${y}" r="3" fill="${colour}"/><text x="${legendX + 24}" y="${y}" dominant-baseline="middle">${escapeXml(series.name)}</text>`
    }),
    `</g>`
  ].join("\n")

  return [
    svgOpen(frame.width, frame.height, spec.title, head.svg),
    yAxis(frame, yTicks, toY, spec.yLabel),
    xAxis,
    reference,
    ...seriesSvg,
    legend,
    `</svg>`,
    ""
  ].join("\n")
}

/** "hydragen+single-level" → ["hydragen", "+single-level"]: mode names fit under a bar. */
const labelLines = (label: string): ReadonlyArray<string> =>
  label.length <= 12 ? [label] : label.split(/(?=\+)/).filter((part) => part.length > 0)

const LINE = 14

/** Side-by-side panels of vertical bars, each on its own y axis, bars captioned above and named below. */
export const barPanelsSvg = (spec: BarPanelsSpec): string => {
  const width = spec.width ?? 760
  const legend = spec.legend ?? []
  const head = header(width, spec.title, spec.subtitle ?? [])
  const legendHeight = legend.length > 0 ? 24 : 0
  const hasPanelTitles = spec.panels.some((p) => p.title !== undefined)
  const captionLines = Math.max(1, ...spec.panels.flatMap((p) => p.bars.map((b) => b.caption?.length ?? 1)))
  const labelRows = Math.max(1, ...spec.panels.flatMap((p) => p.bars.map((b) => labelLines(b.label).length)))
  const grouped = spec.panels.some((p) => p.bars.some((b) => b.group !== undefined))
  const panelTitleY = head.height + legendHeight + 14
  const top = panelTitleY + (hasPanelTitles ? 8 : -10) + captionLines * LINE + 6
  const plotHeight = spec.plotHeight ?? 240
  const bottom = 6 + labelRows * LINE + (grouped ? LINE + 4 : 0) + 6
  const height = Math.round(top + plotHeight + bottom)
  const panelWidth = width / Math.max(spec.panels.length, 1)

  const legendSvg = legendRow(width, head.height + 12, legend)

  const panels = spec.panels.map((panel, p) => {
    const x0 = p * panelWidth
    const frame: Frame = { width: x0 + panelWidth, height, left: x0 + 62, right: 14, top, bottom }
    const values = panel.bars.flatMap((b) => [b.value, b.low ?? b.value, b.high ?? b.value]).filter(Number.isFinite)
    const yTicks = niceTicks(Math.min(0, ...values), Math.max(0, panel.yMax ?? 0, ...values) || 1, 4)
    const yMin = yTicks[0] ?? 0
    const yMax = yTicks[yTicks.length - 1] ?? 1
    const plotWidth = frame.width - frame.left - frame.right
    const toY = (v: number) => top + plotHeight - ((v - yMin) / (yMax - yMin)) * plotHeight
    const zero = toY(0)
    // groups take a bar's width of space between them
    const gaps = panel.bars.reduce((n, b, i) => n + (i > 0 && b.group !== panel.bars[i - 1]!.group ? 1 : 0), 0)
    const slot = plotWidth / Math.max(panel.bars.length + gaps * 0.6, 1)
    const barWidth = Math.min(slot * (grouped ? 0.82 : 0.62), 110)
    let at = frame.left
    const centres = panel.bars.map((b, i) => {
      if (i > 0 && b.group !== panel.bars[i - 1]!.group) at += slot * 0.6
      const centre = at + slot / 2
      at += slot
      return centre
    })
    const bars = panel.bars.map((bar, index) => {
      const colour = PALETTE[(bar.colour ?? index) % PALETTE.length] ?? "#000000"
      const centre = centres[index]!
      const value = Number.isFinite(bar.value) ? bar.value : 0
      const barTop = Math.min(toY(value), zero)
      const barHeight = Math.abs(toY(value) - zero)
      const hasRange = bar.low !== undefined && bar.high !== undefined && Number.isFinite(bar.low) && Number.isFinite(bar.high)
      const captionBase = Math.min(barTop, hasRange ? toY(bar.high!) : barTop) - 6
      const caption = bar.caption ?? [formatValue(value)]
      const strong = bar.strong ?? (caption.length > 1 ? 1 : 0)
      const captionSvg = caption.map((line, i) =>
        `<text x="${round(centre)}" y="${round(captionBase - (caption.length - 1 - i) * LINE)}" text-anchor="middle" fill="#222"${i < strong ? ` font-weight="600"` : ""}>${escapeXml(line)}</text>`
      )
      const labels = labelLines(bar.label).map((line, i) =>
        `<text x="${round(centre)}" y="${round(top + plotHeight + 6 + (i + 1) * LINE - 3)}" text-anchor="middle">${escapeXml(line)}</text>`
      )
      return [
        `<g class="bar" data-name="${escapeXml(bar.label)}">`,
        `<rect x="${round(centre - barWidth / 2)}" y="${round(barTop)}" width="${round(barWidth)}" height="${round(barHeight)}" fill="${colour}"/>`,
        hasRange ? whisker(centre, toY(bar.low!), toY(bar.high!)) : "",
        ...captionSvg,
        ...labels,
        `</g>`
      ].join("\n")
    })
    const groupLabels: Array<string> = []
    if (grouped) {
      for (let i = 0; i < panel.bars.length; i++) {
        const group = panel.bars[i]!.group
        if (group === undefined || (i > 0 && panel.bars[i - 1]!.group === group)) continue
        let j = i
        while (j + 1 < panel.bars.length && panel.bars[j + 1]!.group === group) j++
        const centre = (centres[i]! + centres[j]!) / 2
        groupLabels.push(`<text class="group" x="${round(centre)}" y="${round(height - 10)}" text-anchor="middle" font-weight="600">${escapeXml(group)}</text>`)
      }
    }
    return [
      `<g class="panel"${panel.title === undefined ? "" : ` data-name="${escapeXml(panel.title)}"`}>`,
      panel.title === undefined ? "" : `<text x="${round(frame.left + plotWidth / 2)}" y="${panelTitleY}" text-anchor="middle" font-size="13" font-weight="600">${escapeXml(panel.title)}</text>`,
      yAxis(frame, yTicks, toY, panel.yLabel, panel.tick, x0 + 16),
      `<line x1="${frame.left}" x2="${frame.width - frame.right}" y1="${round(zero)}" y2="${round(zero)}" stroke="#333"/>`,
      ...bars,
      ...groupLabels,
      `</g>`
    ].join("\n")
  })

  return [svgOpen(width, height, spec.title, head.svg), legendSvg, ...panels, `</svg>`, ""].join("\n")
}

const legendRow = (width: number, y: number, legend: ReadonlyArray<{ readonly name: string; readonly colour: number }>): string => {
  if (legend.length === 0) return ""
  const itemWidth = (name: string) => 18 + name.length * 6.5 + 18
  const total = legend.reduce((w, item) => w + itemWidth(item.name), 0)
  let x = (width - total) / 2
  return [
    `<g class="legend">`,
    ...legend.map((item) => {
      const colour = PALETTE[item.colour % PALETTE.length] ?? "#000000"
      const at = x
      x += itemWidth(item.name)
      return `<rect x="${round(at)}" y="${y - 6}" width="12" height="12" fill="${colour}"/><text x="${round(at + 16)}" y="${y}" dominant-baseline="middle">${escapeXml(item.name)}</text>`
    }),
    `</g>`
  ].join("\n")
}

/**
 * Horizontal bars, one row per item (a problem, say) holding a bar per series:
 * long names read on the left and the chart grows downwards with the rows.
 */
export const hbarChartSvg = (spec: HBarChartSpec): string => {
  const width = spec.width ?? 720
  const legend = spec.legend ?? []
  const head = header(width, spec.title, spec.subtitle ?? [])
  const perRow = Math.max(1, ...spec.rows.map((r) => r.bars.length))
  const barHeight = 12
  const rowHeight = perRow * barHeight + 10
  const left = Math.min(260, 16 + Math.max(4, ...spec.rows.map((r) => r.label.length)) * 7)
  const right = 70
  const top = head.height + (legend.length > 0 ? 26 : 0) + 12
  const plotHeight = Math.max(rowHeight, spec.rows.length * rowHeight)
  const height = Math.round(top + plotHeight + 46)
  const values = spec.rows.flatMap((r) => r.bars.map((b) => b.value)).filter(Number.isFinite)
  const ticks = niceTicks(0, Math.max(spec.xMax ?? 0, ...values, 0) || 1, 5)
  const xMax = ticks[ticks.length - 1] ?? 1
  const plotWidth = width - left - right
  const toX = (v: number) => left + (Math.max(0, v) / xMax) * plotWidth
  const tick = spec.tick ?? formatTick
  const baseline = top + plotHeight
  const grid = ticks.map((t) => {
    const x = round(toX(t))
    return `<line x1="${x}" x2="${x}" y1="${top}" y2="${baseline}" stroke="#e5e5e5"/><text x="${x}" y="${baseline + 16}" text-anchor="middle" fill="#333">${escapeXml(tick(t))}</text>`
  })
  const rows = spec.rows.map((row, r) => {
    const y0 = top + r * rowHeight + 5
    const bars = row.bars.map((bar, i) => {
      const colour = PALETTE[(bar.colour ?? i) % PALETTE.length] ?? "#000000"
      const y = y0 + i * barHeight
      const value = Number.isFinite(bar.value) ? bar.value : 0
      const end = toX(value)
      return [
        `<rect x="${left}" y="${round(y + 1)}" width="${round(end - left)}" height="${barHeight - 2}" fill="${colour}"/>`,
        bar.caption === undefined ? "" : `<text x="${round(end + 4)}" y="${round(y + barHeight / 2)}" dominant-baseline="middle" font-size="10" fill="#333">${escapeXml(bar.caption)}</text>`
      ].join("")
    })
    return [
      `<g class="row" data-name="${escapeXml(row.label)}">`,
      `<text x="${left - 8}" y="${round(y0 + (perRow * barHeight) / 2)}" text-anchor="end" dominant-baseline="middle">${escapeXml(row.label)}</text>`,
      ...bars,
      `</g>`
    ].join("\n")
  })
  return [
    svgOpen(width, height, spec.title, head.svg),
    legendRow(width, head.height + 12, legend),
    `<g class="x-axis">`,
    ...grid,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${baseline}" stroke="#333"/>`,
    `<line x1="${left}" x2="${width - right}" y1="${baseline}" y2="${baseline}" stroke="#333"/>`,
    `<text x="${round(left + plotWidth / 2)}" y="${height - 8}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`,
    `</g>`,
    ...rows,
    `</svg>`,
    ""
  ].join("\n")
}

/** Vertical bars with their values printed above them. */
export const barChartSvg = (spec: BarChartSpec): string =>
  barPanelsSvg({
    title: spec.title,
    ...(spec.subtitle !== undefined ? { subtitle: spec.subtitle } : {}),
    panels: [{ yLabel: spec.yLabel, bars: spec.bars }],
    width: spec.width ?? 640,
    ...(spec.height !== undefined ? { plotHeight: spec.height - 120 } : {})
  })
