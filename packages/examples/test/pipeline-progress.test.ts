import { Writable } from "node:stream"
import { describe, expect, it } from "vitest"
import { createProgress, silentProgress } from "../src/pipeline/progress.ts"

const capture = (isTTY: boolean) => {
  const chunks: Array<string> = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      done()
    }
  }) as unknown as NodeJS.WriteStream
  Object.assign(stream, { isTTY, columns: 100, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
  return { stream, text: () => chunks.join("") }
}

describe("progress", () => {
  it("writes occasional plain lines when the stream is not a terminal", () => {
    const out = capture(false)
    let clock = 0
    const progress = createProgress({ stream: out.stream, lineIntervalMs: 1_000, now: () => clock })
    progress.start({ problems: 2, samples: 4 })
    clock = 500
    progress.tokens(50)
    progress.sampleDone()
    expect(out.text()).toBe("")
    clock = 2_000
    progress.tokens(150)
    progress.sampleDone()
    clock = 2_100
    progress.problemDone()
    progress.log("note")
    progress.stop()
    expect(out.text().split("\n")).toEqual([
      "problems 0/2, samples 1/4, tokens 200, 100.0 tokens/s",
      "note",
      "done: problems 1/2, samples 2/4, tokens 200, 95.2 tokens/s",
      ""
    ])
  })

  it("shows samples only for work that is not problems, and closes on the run's own figures", () => {
    const out = capture(false)
    let clock = 0
    const progress = createProgress({ stream: out.stream, lineIntervalMs: 1_000, now: () => clock })
    progress.start({ samples: 3 })
    clock = 1_500
    progress.tokens(30)
    progress.sampleDone()
    clock = 1_600
    // the run's own clock started earlier and ended later than the display's
    progress.stop({ tokens: 45, seconds: 2 })
    expect(out.text().split("\n")).toEqual([
      "samples 0/3, tokens 30, 20.0 tokens/s",
      "done: samples 1/3, tokens 45, 22.5 tokens/s",
      ""
    ])
    const bars = capture(true)
    const drawn = createProgress({ stream: bars.stream, mode: "bars" })
    drawn.start({ samples: 2 })
    drawn.sampleDone()
    drawn.stop({ tokens: 9, seconds: 3 })
    expect(bars.text()).not.toContain("problems")
    expect(bars.text()).toContain("9 tokens, 3.0 tokens/s")
  })

  it("draws bars on a terminal", () => {
    const out = capture(true)
    const progress = createProgress({ stream: out.stream, mode: "bars" })
    progress.start({ problems: 1, samples: 2 })
    progress.tokens(10)
    progress.sampleDone()
    progress.problemDone()
    progress.stop()
    expect(out.text()).toContain("problems")
    expect(out.text()).toContain("tokens/s")
  })

  it("does nothing in silent mode", () => {
    const out = capture(false)
    expect(createProgress({ stream: out.stream, mode: "silent" })).toBe(silentProgress)
    silentProgress.start({ problems: 1, samples: 1 })
    silentProgress.stop()
    expect(out.text()).toBe("")
  })
})
