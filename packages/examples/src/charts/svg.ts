/**
 * Small self-contained SVG charts for run reports and benchmarks. The charting
 * libraries on npm either need a DOM (d3 selections, Chart.js) or only supply
 * scales, and these charts need nothing beyond axes, ticks and a legend.
 */

export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

export interface LineChartSpec {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly series: ReadonlyArray<Series>
  /** Logarithmic x axis, for batch sizes and other doubling quantities. Needs x > 0. */
  readonly logX?: boolean
  readonly width?: number
  readonly height?: number
}

export interface Bar {
  readonly label: string
  readonly value: number
}

export interface BarChartSpec {
  readonly title: string
  readonly yLabel: string
  readonly bars: ReadonlyArray<Bar>
  readonly width?: number
  readonly height?: number
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

const svgOpen = (frame: Frame, title: string): string =>
  [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${frame.width}" height="${frame.height}" viewBox="0 0 ${frame.width} ${frame.height}" ${FONT} font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${frame.width}" height="${frame.height}" fill="#ffffff"/>`,
    `<text x="${frame.width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(title)}</text>`
  ].join("\n")

const yAxis = (frame: Frame, ticks: ReadonlyArray<number>, toY: (v: number) => number, label: string): string => {
  const plotRight = frame.width - frame.right
  const lines = ticks.map((tick) => {
    const y = round(toY(tick))
    return [
      `<line x1="${frame.left}" x2="${plotRight}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${frame.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${escapeXml(formatTick(tick))}</text>`
    ].join("")
  })
  const midY = (frame.top + frame.height - frame.bottom) / 2
  return [
    `<g class="y-axis">`,
    ...lines,
    `<line x1="${frame.left}" x2="${frame.left}" y1="${frame.top}" y2="${frame.height - frame.bottom}" stroke="#333"/>`,
    `<text transform="translate(16 ${round(midY)}) rotate(-90)" text-anchor="middle">${escapeXml(label)}</text>`,
    `</g>`
  ].join("\n")
}

/** Line chart with markers, one colour per series, legend on the right. */
export const lineChartSvg = (spec: LineChartSpec): string => {
  const frame: Frame = { width: spec.width ?? 720, height: spec.height ?? 420, left: 64, right: 170, top: 40, bottom: 56 }
  const logX = spec.logX ?? false
  const points = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0))
  const xs = points.map(([x]) => x)
  const ys = points.map(([, y]) => y)
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
    `<text x="${round(frame.left + plotWidth / 2)}" y="${frame.height - 12}" text-anchor="middle">${escapeXml(spec.xLabel)}${logX ? " (log scale)" : ""}</text>`,
    `</g>`
  ].join("\n")

  const seriesSvg = spec.series.map((series, index) => {
    const colour = PALETTE[index % PALETTE.length] ?? "#000000"
    const visible = series.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0))
      .slice()
      .sort((a, b) => a[0] - b[0])
    const path = visible.map(([x, y], i) => `${i === 0 ? "M" : "L"}${round(toX(x))} ${round(toY(y))}`).join(" ")
    const markers = visible.map(([x, y]) => `<circle cx="${round(toX(x))}" cy="${round(toY(y))}" r="3" fill="${colour}"/>`).join("")
    return [
      `<g class="series" data-name="${escapeXml(series.name)}">`,
      path === "" ? "" : `<path d="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`,
      markers,
      `</g>`
    ].join("\n")
  })

  const legendX = frame.width - frame.right + 16
  const legend = [
    `<g class="legend">`,
    ...spec.series.map((series, index) => {
      const colour = PALETTE[index % PALETTE.length] ?? "#000000"
      const y = frame.top + 8 + index * 20
      return `<line x1="${legendX}" x2="${legendX + 18}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2"/><circle cx="${legendX + 9}" cy="${y}" r="3" fill="${colour}"/><text x="${legendX + 24}" y="${y}" dominant-baseline="middle">${escapeXml(series.name)}</text>`
    }),
    `</g>`
  ].join("\n")

  return [svgOpen(frame, spec.title), yAxis(frame, yTicks, toY, spec.yLabel), xAxis, ...seriesSvg, legend, `</svg>`, ""].join("\n")
}

/** Vertical bars with their values printed above them. */
export const barChartSvg = (spec: BarChartSpec): string => {
  const frame: Frame = { width: spec.width ?? 640, height: spec.height ?? 380, left: 64, right: 24, top: 40, bottom: 56 }
  const values = spec.bars.map((bar) => bar.value).filter(Number.isFinite)
  const yTicks = niceTicks(Math.min(0, ...values), Math.max(0, ...values) || 1)
  const yMin = yTicks[0] ?? 0
  const yMax = yTicks[yTicks.length - 1] ?? 1
  const plotWidth = frame.width - frame.left - frame.right
  const plotHeight = frame.height - frame.top - frame.bottom
  const toY = (v: number) => frame.top + plotHeight - ((v - yMin) / (yMax - yMin)) * plotHeight
  const slot = plotWidth / Math.max(spec.bars.length, 1)
  const barWidth = Math.min(slot * 0.6, 120)
  const zero = toY(0)

  const bars = spec.bars.map((bar, index) => {
    const colour = PALETTE[index % PALETTE.length] ?? "#000000"
    const centre = frame.left + slot * (index + 0.5)
    const value = Number.isFinite(bar.value) ? bar.value : 0
    const top = Math.min(toY(value), zero)
    const height = Math.abs(toY(value) - zero)
    return [
      `<g class="bar" data-name="${escapeXml(bar.label)}">`,
      `<rect x="${round(centre - barWidth / 2)}" y="${round(top)}" width="${round(barWidth)}" height="${round(height)}" fill="${colour}"/>`,
      `<text x="${round(centre)}" y="${round(top - 6)}" text-anchor="middle" fill="#333">${escapeXml(formatTick(Number(value.toPrecision(4))))}</text>`,
      `<text x="${round(centre)}" y="${frame.height - frame.bottom + 18}" text-anchor="middle">${escapeXml(bar.label)}</text>`,
      `</g>`
    ].join("\n")
  })

  return [
    svgOpen(frame, spec.title),
    yAxis(frame, yTicks, toY, spec.yLabel),
    `<line x1="${frame.left}" x2="${frame.width - frame.right}" y1="${round(zero)}" y2="${round(zero)}" stroke="#333"/>`,
    ...bars,
    `</svg>`,
    ""
  ].join("\n")
}
