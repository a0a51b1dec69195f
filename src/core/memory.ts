/**
 * Bounds on V8's heap growth, for processes that run for weeks (`cidget
 * serve`, `cidget worker`) and, with a smaller young generation, for the
 * downloads the CLI runs itself (`cidget get`, `cidget resume`). Neither is a
 * leak: both are sizes V8 chooses and keeps, and the pages it has touched stay
 * in the RSS.
 *
 * - **The young generation** (two semi-spaces). V8 grows it whenever the bytes
 *   that survived scavenges since its last growth exceed its capacity, which
 *   any process that keeps working reaches sooner or later, up to its maximum.
 *   Node 20 (V8 11) caps a semi-space at 16 MiB; Node 24 (V8 13) at 64 MiB, so
 *   a worker draining small downloads grew from about 135 to 255 MB of RSS over
 *   its first 5,000 (bench/worker-memory.ts). `--max-semi-space-size` is read
 *   only when V8 starts, and the CLI is started as `node cidget.mjs …` or
 *   through npm's shims, without flags; the growth factor, however, is read at
 *   each growth, so after every garbage collection this sets it so that the
 *   next growth cannot pass the bound (2, V8's own factor, while a semi-space is
 *   at most half the bound; 1, no growth, above). The observer runs between
 *   the event loop's callbacks: a thread that stays busy (a tree whose gateway
 *   streams at once) can see V8 grow it twice first, so code with such
 *   stretches also calls {@link checkHeapBound} now and then. V8 may still
 *   shrink the young generation (when the process is idle) and grow it again
 *   up to the bound.
 * - **The old generation's headroom.** After each full collection V8 lets the
 *   old generation grow to a multiple of what survived before the next one; with
 *   a worker's small live heap (12–14 MB after each full collection, 10,000
 *   downloads long) Node 24 let it reach 30–51 MB before collecting, and kept
 *   the freed pages: +35 MB of RSS between the 1,000th and the 10,000th
 *   download. `--heap-growing-percent` (read at each collection) fixes the
 *   multiple at 1.5: full collections come every 6–7 MB of promoted garbage
 *   instead (about 4 ms each at this size), and the heap stays at its size.
 *
 * Each is left alone when the process was started with a flag of its own for
 * it (in its arguments or NODE_OPTIONS): any `…semi-space…` flag for the first,
 * `--heap-growing-percent` for the second (node takes that one only as an
 * argument).
 *
 * V8's flags are process-wide: the isolates of worker threads (the file
 * hasher's) follow the same factors, with the young generation's set from the
 * main thread's size, so theirs grows only while the main thread's may.
 *
 * @module
 */

import { PerformanceObserver } from 'node:perf_hooks'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'

/** Node 20's own bound on a semi-space, which Node 24 raised fourfold. */
export const DEFAULT_SEMI_SPACE_MIB = 16
/**
 * The bound for a download the CLI runs in the foreground (`cidget get`,
 * `cidget resume`): its live heap is small (some 15 MB) while it moves a lot
 * of bytes, and every page of a young generation grown to 2 × 16 MiB stays in
 * its RSS. Scavenges of 2 × 4 MiB are short and come more often, which also
 * frees the network's chunks (array buffers, outside the heap) sooner.
 */
export const DOWNLOAD_SEMI_SPACE_MIB = 4
/** The old generation may grow to 1.5 × what survived the last full collection. */
export const DEFAULT_HEAP_GROWING_PERCENT = 50
/** V8's default `--semi-space-growth-factor`. */
const V8_GROWTH_FACTOR = 2

export interface HeapBound {
  /** False when the process was started with a semi-space flag of its own (the young generation is left alone). */
  readonly young: boolean
  /** False when the process was started with `--heap-growing-percent` (the old generation is left alone). */
  readonly old: boolean
  /** Stops adjusting and gives V8 back its own factors. */
  stop: () => void
}

/** Bytes of the young generation's semi-spaces (both of them) as V8 has sized it now. */
export function youngGenerationBytes (): number {
  for (const space of getHeapSpaceStatistics()) {
    if (space.space_name === 'new_space') return space.space_size
  }
  return 0
}

/** The bound's check of the young generation, while one is in force (see checkHeapBound). */
let check: (() => void) | undefined
/** Sets the bound's flags again (see reapplyHeapBound). */
let reapply: (() => void) | undefined
/** The bound's flags as they are set now (see heapBoundFlags). */
let current: (() => string[]) | undefined

/**
 * Applies the bound of {@link boundHeapGrowth} now, if one is in force (each
 * call reads V8's heap statistics: some µs). For code that keeps the thread
 * busy for long stretches, where the bound's observer comes late.
 */
export function checkHeapBound (): void {
  check?.()
}

/**
 * The V8 flags a bound in force has set, as they stand now ([] without one):
 * a worker thread sets them again as it starts (its isolate's start gave
 * them their defaults back), before the main thread may hear of it.
 */
export function heapBoundFlags (): string[] {
  return current?.() ?? []
}

/**
 * Sets the flags of {@link boundHeapGrowth} again, if a bound is in force.
 * Starting a worker thread gives V8's flags their defaults back once its
 * isolate is up (seen on Node 20: the young generation then grew to 2 × 16
 * MiB again); the sink's workers call this on their 'online' event.
 */
export function reapplyHeapBound (): void {
  reapply?.()
}

/**
 * Keeps each of V8's semi-spaces at `semiSpaceMiB` or below (default 16 MiB,
 * Node 20's cap) and the old generation's growth between full collections at
 * `heapGrowingPercent` (default 50 %) for the rest of the process, on every
 * Node version, except where the process was started with a flag of its own
 * (`execArgv`, `NODE_OPTIONS`). Process-wide: for a program's entry point (the
 * CLI's long-running commands), not for a library to call on its host's behalf.
 */
export function boundHeapGrowth (opts: { semiSpaceMiB?: number, heapGrowingPercent?: number, execArgv?: readonly string[], nodeOptions?: string } = {}): HeapBound {
  const flags = [...(opts.execArgv ?? process.execArgv), ...(opts.nodeOptions ?? process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  const young = !flags.some((f) => /^--[a-z_-]*semi[-_]space/.test(f))
  const old = !flags.some((f) => /^--heap[-_]growing[-_]percent/.test(f))
  const growingPercent = Math.round(opts.heapGrowingPercent ?? DEFAULT_HEAP_GROWING_PERCENT)
  if (old) setFlagsFromString(`--heap-growing-percent=${growingPercent}`)
  let observer: PerformanceObserver | undefined
  let factor = V8_GROWTH_FACTOR
  current = () => [
    ...(old ? [`--heap-growing-percent=${growingPercent}`] : []),
    ...(young ? [`--semi-space-growth-factor=${factor}`] : [])
  ]
  reapply = () => { for (const flag of current?.() ?? []) setFlagsFromString(flag) }
  if (young) {
    const bound = (opts.semiSpaceMiB ?? DEFAULT_SEMI_SPACE_MIB) * 1024 * 1024
    const adjust = (): void => {
      const semiSpace = youngGenerationBytes() / 2
      const next = semiSpace > bound / V8_GROWTH_FACTOR ? 1 : V8_GROWTH_FACTOR
      if (next === factor) return
      setFlagsFromString(`--semi-space-growth-factor=${next}`)
      factor = next
    }
    adjust()
    check = adjust
    // called after garbage collections (a batch of them at most), so before the next growth in all but the most
    // allocation-heavy synchronous stretches (a growth needs a semi-space's worth of survivors since the last)
    observer = new PerformanceObserver(adjust)
    observer.observe({ entryTypes: ['gc'] })
  }
  return {
    young,
    old,
    stop: () => {
      observer?.disconnect()
      observer = undefined
      reapply = undefined
      check = undefined
      current = undefined
      if (factor !== V8_GROWTH_FACTOR) setFlagsFromString(`--semi-space-growth-factor=${V8_GROWTH_FACTOR}`)
      factor = V8_GROWTH_FACTOR
      // 0: V8 chooses the factor itself again
      if (old) setFlagsFromString('--heap-growing-percent=0')
    }
  }
}
