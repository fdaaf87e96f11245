/**
 * The host work of one decoding step: what the CPU spends from building its
 * inputs to the step's submit, and what it asks of the GPU (dispatches,
 * bind groups and buffers created, bytes written), on the path the engine's
 * step takes — the forward's inputs from the scheduler's rows (the engine's
 * DecodeBatchBuilder), the plan (its LevelPlanner: the plan's structure kept
 * while the samples' paths stay, as they do from step to step), the
 * attention's prepare, the forward's encode with every layer's attention, the
 * submit.
 *
 * The model and the tree are in stepStack.ts. Every step decodes one token
 * per sample, and the sampled tokens grow the samples' leaves as decoding
 * does.
 *
 * Host time is CPU time from the start of the inputs to the return of the
 * submit, with the wall-clock time beside it (on a machine other processes
 * load, the wall clock also counts their turns on the cores). The GPU's time
 * is kept apart: each step waits for the previous one to finish, and a moment
 * more (a software adapter's worker threads spin a while before they sleep),
 * before its clock starts. Up to the submit the process's CPU time is then
 * the step's own; but a submit starts the GPU, which on a software adapter is
 * threads of this process, so the submit call counts as its wall-clock time.
 * The wait for the GPU first sleeps for most of the last step's GPU time:
 * while a promise of the webgpu package is pending it polls the device,
 * taking a core from a software adapter's threads.
 *
 * The same host work is also timed back to back, with no GPU work between:
 * the step planned, prepared and encoded again and again, its command buffer
 * finished and never submitted. That is the CPU's own cost with warm caches,
 * what a step costs where the GPU is a device of its own and the overlapped
 * scheduler plans a step while the last one runs; on a software adapter the
 * host time above also pays for the emulated GPU's threads on the same cores.
 *
 * The back-to-back host work alternates with the same with every plan built
 * from nothing (planLevels instead of the planner's refresh): what keeping
 * the plan's structure saves, in the same rounds.
 *
 * With `separateMerge`, the back-to-back host work alternates with the same
 * on an attention whose merge is a pass of its own (the step's attention
 * merges in its decode items where the device allows it): what the fusion's
 * dispatch per layer costs the host, in the same rounds. With `separateRope`,
 * likewise with a forward whose RoPE and KV append are a kernel of their own
 * after the q/k/v projection instead of its epilogue.
 *
 * Beside the host time stands the time of the step's WebGPU calls alone
 * (recordedCalls.ts): the last warm-up step's passes, recorded and replayed
 * into an encoder with nothing else, the floor the binding puts under a step
 * of that many dispatches; and the CPU time of submitting them with empty
 * grids: the submit's own share of the host time, which the back-to-back
 * figure (never submitted) leaves out.
 */
import { countsSince, type GpuWorkCounts, readUint32, sumCounts, type TuneOptions } from "@canopy/kernels"
import type { DecodeRow } from "@canopy/runtime"
import { planLevels, type SeqId } from "@canopy/tree-cache"
import { setTimeout as sleep } from "node:timers/promises"
import { spreadOf, type Spread } from "./figures.ts"
import { cpuMs, RecordedCalls } from "./recordedCalls.ts"
import { buildStepTree, createStepStack, DecodeRows, MAX_STEP_BATCH, type StepPreset, type StepStack, stepModelConfig } from "./stepStack.ts"

export interface StepBenchOptions {
  readonly preset: StepPreset
  /** layers of the model (default: the preset's) */
  readonly layers?: number
  /** query and KV heads (default: the preset's; both presets have one query head per KV head) */
  readonly heads?: number
  readonly batches: ReadonlyArray<number>
  /** untimed steps first at every point: the first makes the bind groups and grows the plan buffers */
  readonly warmup: number
  /** timed steps at every point */
  readonly steps: number
  readonly onProgress?: (text: string) => void
  /** tuning the kernels as an engine does (default: on, unless CANOPY_TUNE=off); false keeps their defaults */
  readonly tune?: false | TuneOptions
  /** also time the host work back to back with the merge as a pass of its own, alternating with the step's */
  readonly separateMerge?: boolean
  /** likewise with RoPE and the KV append as a kernel of their own */
  readonly separateRope?: boolean
}

/** The host work back to back on a step with one fusion undone, and that step's dispatches. */
export interface SeparatePart {
  readonly hostBackToBackMs: Spread
  readonly dispatchesPerStep: number
}

export interface StepPhases {
  /** the forward's inputs from the rows */
  readonly batchMs: number
  readonly planMs: number
  readonly prepareMs: number
  readonly encodeMs: number
  readonly submitMs: number
}

export interface StepPoint {
  readonly batch: number
  readonly layers: number
  /** host ms (CPU up to the submit, the submit call on the wall clock): median over the timed steps, with their range */
  readonly hostMsPerStep: number
  readonly hostMs: Spread
  /** each timed step's host ms, in order */
  readonly hostMsSteps: ReadonlyArray<number>
  /** the same span on the wall clock */
  readonly hostWallMs: Spread
  /** CPU ms of the host work repeated back to back, never submitted (no GPU work between) */
  readonly hostBackToBackMs: Spread
  /** the same with every plan built from nothing (planLevels), in alternation with it */
  readonly freshPlanBackToBackMs: Spread
  /** the same with the merge as a pass of its own, in alternation with it (with `separateMerge`), and that step's dispatches */
  readonly separateMerge?: SeparatePart
  /** the same with RoPE and the KV append as a kernel of their own, in alternation with it (with `separateRope`) */
  readonly separateRope?: SeparatePart
  /** medians of each phase of the host time, on the wall clock */
  readonly phases: StepPhases
  /** the most any timed step asked for */
  readonly bindGroupsPerStep: number
  readonly buffersPerStep: number
  readonly dispatchesPerStep: number
  readonly bytesWrittenPerStep: number
  /** the first step at the point: what a step asks for before anything is cached */
  readonly firstStep: GpuWorkCounts
  /** median wait for the GPU after the submit (not host time; on a busy machine, an upper bound) */
  readonly gpuMsPerStep: number
  /** CPU ms of the step's WebGPU calls replayed alone, back to back, from a new encoder to its finish (none without a warm-up step) */
  readonly callsAloneMs: Spread | undefined
  /** the same, replayed once as a step starts: after the last step's GPU work and the settle a step waits */
  readonly callsAfterGpuMs: number | undefined
  /** CPU ms of submitting the same calls with empty grids: the submit's own host cost (none without a warm-up step) */
  readonly submitAloneMs: Spread | undefined
}

/** back-to-back replays of the recorded calls timed at every point, after the one timed as a step starts */
const CALL_REPLAYS = 5

/** back-to-back host-only steps timed at every point, after as many untimed */
const HOST_REPEATS = 10

/** how long a step waits, idle, before its clock starts (see above) */
const SETTLE_MS = 50

export interface Measured {
  readonly hostMs: number
  readonly wallMs: number
  readonly phases: StepPhases
  readonly counts: GpuWorkCounts
  readonly gpuMs: number
}

const countsOf = (stack: StepStack): GpuWorkCounts => sumCounts([stack.forward.counters.snapshot(), stack.attention.counters.snapshot()])

interface Encoded {
  readonly commands: GPUCommandBuffer
  /** performance.now() after building the inputs, planning, preparing and encoding */
  readonly marks: readonly [number, number, number, number]
}

/** The step's host work up to the submit, as the engine's step does it: inputs, plan, prepare, encode; `prepared` is what the caller releases. */
const encodeStep = (
  device: GPUDevice, stack: StepStack, rows: ReadonlyArray<DecodeRow>, keep: (prepared: { destroy(): void }) => void,
  record?: RecordedCalls
): Encoded => {
  const { kv, forward, attention } = stack
  const batch = stack.inputs.inputs(rows)
  const t1 = performance.now()
  const plan = stack.planner.plan(kv.tree, batch.seqs)
  const t2 = performance.now()
  const prepared = attention.prepare(plan)
  keep(prepared)
  const t3 = performance.now()
  const created = device.createCommandEncoder({ label: "bench step" })
  const encoder = record === undefined ? created : record.recording(created)
  forward.encode(encoder, batch, { inPass: (pass, _layer, buffers) => attention.encodeInPass(pass, prepared, buffers) })
  const t4 = performance.now()
  return { commands: encoder.finish(), marks: [t1, t2, t3, t4] }
}

/**
 * CPU ms of the step's host work on each of `stacks`, `HOST_REPEATS` times
 * back to back after as many untimed, the stacks taking turns, each step
 * finished and dropped unsubmitted; and the dispatches a step of each encodes.
 */
const hostBackToBack = (
  device: GPUDevice, stacks: ReadonlyArray<StepStack>, rows: ReadonlyArray<DecodeRow>
): Array<{ readonly times: Array<number>; readonly dispatches: number }> => {
  const times = stacks.map((): Array<number> => [])
  // counted on one step of each (the stacks share their forward's counters)
  const dispatches = stacks.map(() => 0)
  for (let i = 0; i < 2 * HOST_REPEATS; i++) {
    stacks.forEach((stack, s) => {
      let prepared: { destroy(): void } | undefined
      const before = countsOf(stack).dispatches
      const cpu0 = cpuMs()
      try {
        encodeStep(device, stack, rows, (p) => (prepared = p))
        if (i >= HOST_REPEATS) times[s]!.push(cpuMs() - cpu0)
      } finally {
        prepared?.destroy()
      }
      dispatches[s] = countsOf(stack).dispatches - before
    })
  }
  return stacks.map((_, s) => ({ times: times[s]!, dispatches: dispatches[s]! }))
}

/**
 * One decoding step: timed from planning to the submit; then, untimed, the
 * GPU's work (slept through for `sleepMs` first) and the tree's growth by the
 * sampled tokens.
 */
export const decodeStep = async (
  device: GPUDevice, stack: StepStack, samples: ReadonlyArray<SeqId>, inputs: DecodeRows, sleepMs: number, record?: RecordedCalls
): Promise<Measured> => {
  const { kv, forward } = stack
  // the scheduler's part, before the step's
  const rows = inputs.rows(kv)
  await sleep(SETTLE_MS)
  const before = countsOf(stack)
  let prepared: { destroy(): void } | undefined
  try {
    const cpu0 = cpuMs()
    const t0 = performance.now()
    const { commands, marks: [t1, t2, t3, t4] } = encodeStep(device, stack, rows, (p) => (prepared = p), record)
    const encodedCpu = cpuMs()
    device.queue.submit([commands])
    const t5 = performance.now()
    const hostMs = encodedCpu - cpu0 + (t5 - t4)
    const counts = countsSince(countsOf(stack), before)
    await sleep(sleepMs)
    await device.queue.onSubmittedWorkDone()
    const gpuMs = performance.now() - t5
    const sampled = await readUint32(device, forward.sampled, samples.length)
    for (let r = 0; r < samples.length; r++) {
      inputs.last[r] = sampled[r]!
      // a leaf of one sample grows in place: no block copies
      kv.tree.append(samples[r]!, [sampled[r]!])
    }
    return {
      hostMs,
      wallMs: t5 - t0,
      phases: { batchMs: t1 - t0, planMs: t2 - t1, prepareMs: t3 - t2, encodeMs: t4 - t3, submitMs: t5 - t4 },
      counts,
      gpuMs
    }
  } finally {
    prepared?.destroy()
  }
}

const runPoint = async (device: GPUDevice, stack: StepStack, batch: number, options: StepBenchOptions): Promise<StepPoint> => {
  const samples = buildStepTree(stack.kv, batch, stack.forward.weights.config.vocabSize)
  const inputs = new DecodeRows(stack.kv, samples)
  try {
    const measured: Array<Measured> = []
    const calls = new RecordedCalls()
    for (let i = 0; i < options.warmup + options.steps; i++) {
      options.onProgress?.(`batch ${batch}: step ${i + 1} of ${options.warmup + options.steps}${i < options.warmup ? " (warm-up)" : ""}`)
      const record = i === options.warmup - 1 ? calls : undefined
      measured.push(await decodeStep(device, stack, samples, inputs, 0.8 * (measured.at(-1)?.gpuMs ?? 0), record))
    }
    // the recorded calls replayed once as a step starts (after the GPU's work and the settle), then back to back
    let afterGpu: number | undefined
    let replays: Array<number> = []
    const submits: Array<number> = []
    if (options.warmup > 0) {
      await sleep(SETTLE_MS)
      afterGpu = calls.replay(device).cpuMs
      replays = Array.from({ length: CALL_REPLAYS }, () => calls.replay(device).cpuMs)
      options.onProgress?.(`batch ${batch}: the submit alone (empty grids, which Dawn warns of once)`)
      for (let i = 0; i < CALL_REPLAYS; i++) submits.push(await calls.submitAlone(device))
    }
    options.onProgress?.(`batch ${batch}: the host work back to back`)
    // beside the step: the same with every plan built from nothing, and (where asked) with the merge as a pass of its own
    const fresh: StepStack = { ...stack, planner: { plan: planLevels } }
    const merge = stack.separateMerge === undefined ? [] : [{ ...stack, attention: stack.separateMerge }]
    const rope = stack.separateRope === undefined ? [] : [{ ...stack, ...stack.separateRope }]
    const [backToBack, freshBackToBack, ...apart] = hostBackToBack(device, [stack, fresh, ...merge, ...rope], inputs.rows(stack.kv))
    const part = (m: (typeof apart)[number] | undefined): SeparatePart | undefined =>
      m && { hostBackToBackMs: spreadOf(m.times), dispatchesPerStep: m.dispatches }
    const separateMerge = part(merge.length > 0 ? apart[0] : undefined)
    const separateRope = part(rope.length > 0 ? apart[merge.length] : undefined)
    const timed = measured.slice(options.warmup)
    const medianOf = (f: (m: Measured) => number) => spreadOf(timed.map(f)).median
    const most = (f: (c: GpuWorkCounts) => number) => Math.max(...timed.map((m) => f(m.counts)))
    const hostMs = spreadOf(timed.map((m) => m.hostMs))
    return {
      batch,
      layers: stack.forward.weights.config.numLayers,
      hostMsPerStep: hostMs.median,
      hostMs,
      hostMsSteps: timed.map((m) => m.hostMs),
      hostWallMs: spreadOf(timed.map((m) => m.wallMs)),
      hostBackToBackMs: spreadOf(backToBack!.times),
      freshPlanBackToBackMs: spreadOf(freshBackToBack!.times),
      ...(separateMerge === undefined ? {} : { separateMerge }),
      ...(separateRope === undefined ? {} : { separateRope }),
      phases: {
        batchMs: medianOf((m) => m.phases.batchMs),
        planMs: medianOf((m) => m.phases.planMs),
        prepareMs: medianOf((m) => m.phases.prepareMs),
        encodeMs: medianOf((m) => m.phases.encodeMs),
        submitMs: medianOf((m) => m.phases.submitMs)
      },
      bindGroupsPerStep: most((c) => c.bindGroups),
      buffersPerStep: most((c) => c.buffers),
      dispatchesPerStep: most((c) => c.dispatches),
      bytesWrittenPerStep: most((c) => c.bytesWritten),
      firstStep: measured[0]!.counts,
      gpuMsPerStep: medianOf((m) => m.gpuMs),
      callsAloneMs: replays.length > 0 ? spreadOf(replays) : undefined,
      submitAloneMs: submits.length > 0 ? spreadOf(submits) : undefined,
      callsAfterGpuMs: afterGpu
    }
  } finally {
    for (const seq of samples) stack.kv.tree.release(seq)
    stack.kv.tree.evict(stack.kv.numBlocks)
  }
}

export const runStepBench = async (device: GPUDevice, options: StepBenchOptions): Promise<ReadonlyArray<StepPoint>> => {
  const tooMany = options.batches.find((b) => b > MAX_STEP_BATCH)
  if (tooMany !== undefined) throw new RangeError(`--batch: ${tooMany} samples; the benchmark's tree holds at most ${MAX_STEP_BATCH}`)
  const config = stepModelConfig(options.preset, options.layers, options.heads)
  const stack = await createStepStack(device, config, Math.max(...options.batches), options.warmup + options.steps, options.tune, {
    merge: options.separateMerge ?? false, rope: options.separateRope ?? false
  })
  try {
    const points: Array<StepPoint> = []
    for (const batch of options.batches) points.push(await runPoint(device, stack, batch, options))
    return points
  } finally {
    stack.destroy()
  }
}
