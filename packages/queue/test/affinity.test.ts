/**
 * Prefix affinity's choice, against a second statement of the same rules:
 * every open group gets a rank (1 the group being served, 2 a group held,
 * 3 a group nobody else serves, 4 a busy group worth joining, none
 * otherwise) and the best rank wins, most jobs waiting first, then the id.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { chooseGroup, type Chooser, type GroupView, orphanedGroups } from "../src/index.ts"

const ME = "me"

const viewArb = fc.record({
  group: fc.constantFrom("g0", "g1", "g2", "g3", "g4", "g5"),
  waiting: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20 })),
  active: fc.integer({ min: 0, max: 5 }),
  servers: fc.uniqueArray(fc.constantFrom(ME, "w1", "w2"), { maxLength: 3 })
})

const viewsArb = fc.uniqueArray(viewArb, { selector: (v) => v.group, maxLength: 6 })

const chooserArb = fc.record({
  worker: fc.constant(ME),
  held: fc.uniqueArray(fc.constantFrom("g0", "g1", "g2", "g3", "g4", "g5"), { maxLength: 3 }).map((h) => new Set(h)),
  current: fc.option(fc.constantFrom("g0", "g1", "g2", "g6"), { nil: undefined }),
  stealAbove: fc.integer({ min: 0, max: 10 })
})

const rank = (v: GroupView, me: Chooser): number | undefined => {
  if (v.waiting === 0) return undefined
  if (v.group === me.current) return 1
  if (me.held.has(v.group)) return 2
  if (v.servers.every((s) => s === me.worker)) return 3
  return v.waiting > me.stealAbove ? 4 : undefined
}

const REASONS = { 1: "stay", 2: "held", 3: "claim", 4: "steal" } as const

const expected = (views: ReadonlyArray<GroupView>, me: Chooser) => {
  const ranked = views.flatMap((v) => {
    const r = rank(v, me)
    return r === undefined ? [] : [{ v, r }]
  })
  ranked.sort((a, b) => a.r - b.r || b.v.waiting - a.v.waiting || a.v.group.localeCompare(b.v.group))
  const best = ranked[0]
  return best === undefined ? undefined : { group: best.v.group, reason: REASONS[best.r as 1 | 2 | 3 | 4] }
}

describe("choosing the prefix group to take jobs from", () => {
  it("agrees with the ranking on random views", () => {
    fc.assert(fc.property(viewsArb, chooserArb, (views, me) => {
      expect(chooseGroup(views, me)).toEqual(expected(views, me))
    }), { numRuns: 2000 })
  })

  it("keeps to a group while it has work, then goes back to one it holds before claiming or joining another", () => {
    const views: Array<GroupView> = [
      { group: "mine", waiting: 1, active: 0, servers: [ME] },
      { group: "held", waiting: 2, active: 0, servers: ["w1"] },
      { group: "free", waiting: 9, active: 0, servers: [] },
      { group: "busy", waiting: 30, active: 4, servers: ["w1", "w2"] }
    ]
    const me = { worker: ME, held: new Set(["held"]), current: "mine", stealAbove: 8 }
    expect(chooseGroup(views, me)).toEqual({ group: "mine", reason: "stay" })
    expect(chooseGroup(views, { ...me, current: undefined })).toEqual({ group: "held", reason: "held" })
    expect(chooseGroup(views, { ...me, current: undefined, held: new Set() })).toEqual({ group: "free", reason: "claim" })
    expect(chooseGroup(views.slice(3), { ...me, current: undefined, held: new Set() })).toEqual({ group: "busy", reason: "steal" })
    // a few jobs waiting where others serve: not worth a second copy of the prefix
    expect(chooseGroup(views.slice(3), { ...me, current: undefined, held: new Set(), stealAbove: 30 })).toBeUndefined()
  })

  it("watches exactly the groups with active jobs and no live server", () => {
    fc.assert(fc.property(viewsArb, (views) => {
      const watched = new Set(orphanedGroups(views))
      for (const v of views) expect(watched.has(v.group)).toBe(v.active > 0 && v.servers.length === 0)
    }))
  })
})
