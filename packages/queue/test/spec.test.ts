/**
 * The pieces of a run that need no Redis: the URL, the spec's checks, how
 * samples are cut into jobs, seeds and group ids, and how a redone job asks
 * for exactly its missing samples.
 */
import { createHash } from "node:crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  blockRequest, checkRunSpec, consecutiveRuns, groupOf, InvalidQueueUrl, InvalidRunSpec, jobId, modelKey, parseQueueUrl, problemSeed,
  type RunRecord, type RunSpec, sampleBlocks
} from "../src/index.ts"

const spec: RunSpec = {
  model: "synthetic:tiny",
  kvDtype: "f16",
  prefix: "few-shot",
  problems: [{ id: "a", prompt: "A" }, { id: "b", prompt: "B" }],
  samplesPerProblem: 4,
  blockSize: 2,
  sampling: { seed: 1 }
}

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

describe("the queue URL", () => {
  it("reads host, port, database and credentials, and shows no password", () => {
    expect(parseQueueUrl("redis://10.0.0.7:6380/3")).toEqual({ shown: "redis://10.0.0.7:6380/3", host: "10.0.0.7", port: 6380, db: 3, tls: false })
    expect(parseQueueUrl("redis://localhost")).toMatchObject({ port: 6379, db: 0 })
    expect(parseQueueUrl("rediss://user:s%40cret@[::1]:7000/0")).toEqual({
      shown: "rediss://user:***@[::1]:7000/0", host: "::1", port: 7000, db: 0, username: "user", password: "s@cret", tls: true
    })
  })

  it.each([
    ["not a url", "not a URL"],
    ["http://host:6379/0", "the scheme must be redis://"],
    ["redis://host:6379/zero", "the path must be a database number"],
    ["redis://host:6379/0/1", "the path must be a database number"],
    ["redis://host:6379/0?x=1", "takes no query"],
    ["redis://:hunter2@host:6379/x", "redis://:***@host:6379/x: the path"]
  ])("refuses %s, saying why", (url, why) => {
    const e = thrown(() => parseQueueUrl(url))
    expect(e).toBeInstanceOf(InvalidQueueUrl)
    expect((e as Error).message).toContain(why)
    expect((e as Error).message).not.toContain("hunter2")
  })
})

describe("a run spec", () => {
  it.each<[string, Partial<RunSpec>]>([
    ["model", { model: "" }],
    ["kvDtype", { kvDtype: "f8" as "f16" }],
    ["pool", { pool: "a b" }],
    ["problems.length", { problems: [] }],
    ["problems[1].id", { problems: [{ id: "a", prompt: "" }, { id: "a", prompt: "" }] }],
    ["problems[0].id", { problems: [{ id: "", prompt: "" }] }],
    ["samplesPerProblem", { samplesPerProblem: 0 }],
    ["blockSize", { blockSize: 1.5 }],
    ["samplesPerProblem", { samplesPerProblem: 1_000_000, problems: Array.from({ length: 11 }, (_, i) => ({ id: String(i), prompt: "" })) }],
    ["sampling.seed", { sampling: { seed: -1 } }],
    ["attempts", { attempts: 0 }]
  ])("names %s when it is wrong", (field, change) => {
    const e = thrown(() => checkRunSpec({ ...spec, ...change }))
    expect(e).toBeInstanceOf(InvalidRunSpec)
    expect((e as InvalidRunSpec).field).toBe(field)
  })

  it("takes a good one", () => expect(thrown(() => checkRunSpec(spec))).toBeUndefined())
})

describe("jobs and seeds", () => {
  it("cuts a problem's samples into blocks that cover each index once, in order", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 40 }), (samples, block) => {
      const covered = sampleBlocks(samples, block).flatMap(([first, count]) => {
        expect(count).toBeGreaterThan(0)
        expect(count).toBeLessThanOrEqual(block)
        return Array.from({ length: count }, (_, k) => first + k)
      })
      expect(covered).toEqual(Array.from({ length: samples }, (_, i) => i))
    }))
  })

  it("turns sorted indices into maximal runs of consecutive ones", () => {
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 60 })), (raw) => {
      const indices = [...raw].sort((a, b) => a - b)
      const runs = consecutiveRuns(indices)
      expect(runs.flatMap(([first, count]) => Array.from({ length: count }, (_, k) => first + k))).toEqual(indices)
      for (let i = 1; i < runs.length; i++) expect(runs[i]![0]).toBeGreaterThan(runs[i - 1]![0] + runs[i - 1]![1])
    }))
  })

  it("derives each problem's seed from the run's seed and the problem's id alone", () => {
    // the first 32 bits of SHA-256, worked out here apart from the code; pinned, because a change would change every run's samples
    const expected = (seed: number, id: string) => createHash("sha256").update(`canopy problem seed\0${seed}\0${id}`).digest().readUInt32BE(0)
    expect(problemSeed(0, "1")).toBe(3719075693)
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.string({ minLength: 1 }), (seed, id) => {
      expect(problemSeed(seed, id)).toBe(expected(seed, id))
    }))
    expect(problemSeed(0, "1")).not.toBe(problemSeed(1, "1"))
    expect(problemSeed(0, "1")).not.toBe(problemSeed(0, "2"))
  })

  it("gives a prefix group one id per (model, KV type, pool, prefix)", () => {
    const base = groupOf("synthetic:tiny", "f16", "default", "few")
    expect(groupOf("synthetic:tiny", "f16", "default", "few")).toBe(base)
    for (const other of [
      groupOf("synthetic:small", "f16", "default", "few"), groupOf("synthetic:tiny", "f32", "default", "few"),
      groupOf("synthetic:tiny", "f16", "gpu", "few"), groupOf("synthetic:tiny", "f16", "default", "few ")
    ]) expect(other).not.toBe(base)
    expect(base).toMatch(/^[0-9a-f]{16}$/)
  })

  it("names models alike on every machine, and jobs without the characters BullMQ refuses", () => {
    expect(modelKey("synthetic:tiny")).toBe("synthetic:tiny")
    expect(modelKey("/models/CodeLlama-7b-hf/")).toBe("CodeLlama-7b-hf")
    expect(modelKey("/data/llm/CodeLlama-7b-hf")).toBe("CodeLlama-7b-hf")
    expect(jobId("r0123456789", 12, 32)).toBe("r0123456789.12.32")
  })

  it("asks the engine for the missing samples of a block, numbered as a local run numbers them", () => {
    const record = { sampling: { temperature: 0.5, seed: 9 } } as RunRecord
    const request = blockRequest("FEW", { id: "a", prompt: "P", seed: 77 }, [[2, 1], [5, 3]], record)
    expect(request).toEqual({
      tree: {
        text: "FEW",
        children: [
          { text: "P", samples: 1, firstSample: 2, sampling: { seed: 77 } },
          { text: "P", samples: 3, firstSample: 5, sampling: { seed: 77 } }
        ]
      },
      sampling: { temperature: 0.5, seed: 9 }
    })
  })
})
