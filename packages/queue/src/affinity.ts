/**
 * Prefix affinity: which prefix group a worker takes its next jobs from.
 *
 * Each prefix group has its own BullMQ queue, so a worker chooses work by
 * choosing a queue. A worker that has run a group's jobs holds its prefix in
 * its KV cache; work that shares a prefix should go where the prefix is. In
 * order, a worker
 *   1. stays on the group it is taking jobs from while that has jobs waiting;
 *   2. goes back to a group it has served before (its prefix is likely still cached);
 *   3. claims a group no live worker serves (one claim wins: a Lua script);
 *   4. joins a group others serve only when more jobs wait there than
 *      `stealAbove` (the serving workers' next batch): a second copy of a
 *      prefix costs one prefill, worth it for a batch of work, not for a few jobs.
 * A group whose jobs are active but that no live worker serves (its worker
 * died) gets a watcher: BullMQ's stalled-job check, which moves the dead
 * worker's jobs back to waiting once their locks lapse; rule 3 then applies.
 */

/** A prefix group as one worker sees it at one moment. */
export interface GroupView {
  readonly group: string
  /** jobs that may be taken now */
  readonly waiting: number
  readonly active: number
  /** workers whose lease on the group is live, this one included when it has one */
  readonly servers: ReadonlyArray<string>
}

export interface Chooser {
  readonly worker: string
  /** groups this worker has run jobs of */
  readonly held: ReadonlySet<string>
  /** the group it is taking jobs from now, if any */
  readonly current: string | undefined
  readonly stealAbove: number
}

export type ChoiceReason = "stay" | "held" | "claim" | "steal"

export interface Choice {
  readonly group: string
  readonly reason: ChoiceReason
}

/** Most jobs waiting first; the group id breaks ties, so that every worker ranks groups alike. */
const byWaiting = (a: GroupView, b: GroupView): number => b.waiting - a.waiting || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0)

const servedByOthers = (view: GroupView, worker: string): boolean => view.servers.some((s) => s !== worker)

export const chooseGroup = (views: ReadonlyArray<GroupView>, me: Chooser): Choice | undefined => {
  const open = views.filter((v) => v.waiting > 0).sort(byWaiting)
  const current = open.find((v) => v.group === me.current)
  if (current !== undefined) return { group: current.group, reason: "stay" }
  const held = open.find((v) => me.held.has(v.group))
  if (held !== undefined) return { group: held.group, reason: "held" }
  const unserved = open.find((v) => !servedByOthers(v, me.worker))
  if (unserved !== undefined) return { group: unserved.group, reason: "claim" }
  const busy = open.find((v) => v.waiting > me.stealAbove)
  return busy !== undefined ? { group: busy.group, reason: "steal" } : undefined
}

/** Groups with active jobs and no live worker serving them: their jobs are a dead worker's, to be recovered. */
export const orphanedGroups = (views: ReadonlyArray<GroupView>): Array<string> =>
  views.filter((v) => v.active > 0 && v.servers.length === 0).map((v) => v.group)
