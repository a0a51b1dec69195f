import type { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import type { RunRange } from '../../gateways/car.js'

/** A raw leaf known ahead of the walk: its block number, and where it lies in `entity`'s bytes. */
export interface PlannedLeaf {
  index: number
  cid: CID
  /** Offset in the entity's bytes. */
  offset: number
  size: number
  /** Which inner node (below the entity) holds it: a run that spans several carries each of them. */
  parent: number
}

/**
 * The one planner of CAR runs (IPIP-402 entity bytes) for a walk's raw
 * leaves, in two ways:
 *
 * - Leaves registered ahead of the walk (`add`: those of the next inner
 *   nodes, not only of the current one), asked for as the walk nears them
 *   (`advance`): a run is up to `runBlocks` leaves that follow each other in
 *   the file and in block numbers, none of them done. So the runs in flight do
 *   not drain at the end of every inner node. Near the end, runs get shorter:
 *   the leaves left are shared among the gateways (`spread`), so that they all
 *   finish about together instead of one still sending a whole run while the
 *   others are idle.
 * - The children of one inner node, as the walk goes through it
 *   (`startChildren`): runs of consecutive raw leaves within the window past
 *   the walk.
 *
 * A leaf left alone (no neighbour to run with) is fetched by the walk as a
 * single block. Each way stops for the rest of the download once the source
 * cannot start one of its runs.
 */
export class RunPlanner<L extends PlannedLeaf = PlannedLeaf> {
  readonly #queue: Array<L & { entity: CID }> = []
  readonly #runBlocks: number
  readonly #spread: number
  readonly #window: number
  readonly #isDone: (index: number) => boolean
  readonly #start: (entity: CID, range: RunRange, leaves: readonly L[]) => boolean
  #enabled = true
  #children: boolean
  /** Block numbers below this are in a run already, or left to the walk. */
  #next = 0

  constructor (init: {
    runBlocks: number
    /** Whether runs of a node's children are asked for (`startChildren`). @default true */
    children?: boolean
    /** Gateways the runs go to. @default 1 */
    spread?: number
    /** Leaves ahead of the walk that may be asked for. */
    window: number
    isDone: (index: number) => boolean
    /** Starts one run of `leaves` (in order, as they were added); false when the source cannot (runs stop for the rest of the download). */
    start: (entity: CID, range: RunRange, leaves: readonly L[]) => boolean
  }) {
    this.#children = init.children ?? true
    this.#runBlocks = init.runBlocks
    this.#spread = Math.max(1, init.spread ?? 1)
    this.#window = init.window
    this.#isDone = init.isDone
    this.#start = init.start
  }

  /** Whether registered leaves are still asked for in runs. */
  get enabled (): boolean {
    return this.#enabled
  }

  /** Whether runs of a node's children are still asked for. */
  get children (): boolean {
    return this.#children
  }

  /** Registers leaves of `entity`, in walk order, after those registered before. */
  add (entity: CID, leaves: readonly L[]): void {
    for (const leaf of leaves) {
      if (leaf.index < this.#next) continue
      this.#queue.push({ ...leaf, entity })
      this.#next = leaf.index + 1
    }
  }

  /** The walk is at block `current`: starts the runs of the registered leaves within the window. */
  advance (current: number): void {
    const limit = current + this.#window
    while (this.#enabled && this.#queue.length > 0 && (this.#queue[0] as PlannedLeaf).index < limit) {
      const first = this.#queue.shift() as L & { entity: CID }
      if (first.index < current || this.#isDone(first.index)) continue
      const run = [first]
      // the leaves registered and not asked for yet: at the end of the file, all that is left
      const size = Math.min(this.#runBlocks, Math.max(2, Math.ceil((this.#queue.length + 1) / this.#spread)))
      for (;;) {
        const last = run[run.length - 1] as L & { entity: CID }
        const next = this.#queue[0]
        if (next === undefined || run.length >= size || next.entity !== first.entity ||
          next.index !== last.index + 1 || next.offset !== last.offset + last.size || this.#isDone(next.index)) break
        run.push(this.#queue.shift() as L & { entity: CID })
      }
      if (run.length < 2) continue // one leaf: the walk asks for it alone
      const last = run[run.length - 1] as PlannedLeaf
      const parents = new Set(run.map((l) => l.parent)).size
      const range = { from: first.offset, to: last.offset + last.size - 1, nodes: 1 + parents, sizes: run.map((l) => l.size) }
      if (!this.#start(first.entity, range, run)) this.#enabled = false
    }
  }

  /**
   * Starts the runs of `entity`'s `children` from child `from` on, up to the
   * window past child `current` (the one the walk is at): consecutive raw
   * leaves that `leaf` gives (undefined: done already, or coming another
   * way). Returns the first child not covered. Only raw leaves are looked at:
   * each takes exactly one block number, so whether one is done can be told
   * before the walk gets there.
   */
  startChildren (entity: CID, children: readonly CID[], current: number, from: number, leaf: (child: number) => L | undefined): number {
    const end = Math.min(children.length, current + this.#window)
    let j = from
    while (j < end && this.#children) {
      const first = j
      const run: L[] = []
      for (let next: L | undefined; j < end && j - first < this.#runBlocks && (children[j] as CID).code === rawCodec.code &&
        (next = leaf(j)) !== undefined; j++) run.push(next)
      if (run.length > 1) {
        const last = run[run.length - 1] as L
        const range = { from: (run[0] as L).offset, to: last.offset + last.size - 1, sizes: run.map((l) => l.size) }
        if (!this.#start(entity, range, run)) this.#children = false
      }
      if (j === first) {
        if ((children[j] as CID).code !== rawCodec.code) return j // the block numbers after it are not known yet
        j++ // done already, or coming another way
      }
    }
    return j
  }
}
