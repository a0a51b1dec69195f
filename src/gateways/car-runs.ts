/**
 * Runs of leaves as CAR streams (`entity-bytes` ranges), one gateway each,
 * and their end game: a gateway left idle takes the second half of the
 * longest run still streaming elsewhere, as a download manager splits a slow
 * segment. Whatever a stream does not deliver is fetched block by block.
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { blockKey, blockLength, checkMultihash, identityBytes, type BlockBytes } from './block.js'
import { CarUnsupportedError, fetchCarRun, type RunRange } from './car.js'
import type { Gateway } from './gateway.js'
import type { BlockFetcher } from './block-fetch.js'
import { HANDED_ON, POOL_DEFAULTS, asError, type PoolBase } from './pool-base.js'

/** A block a run fetches (or has fetched) ahead of its `get()`. */
export interface Prefetched {
  /** Leaves from a CAR stream come in the pieces they arrived in. */
  promise: Promise<BlockBytes>
  /** The `get()` calls still expected (a leaf can appear more than once in a file). */
  uses: number
  signal: AbortSignal
}

/** One leaf of a run, until the stream delivers it or it is handed to a normal fetch. */
interface RunLeaf {
  cid: CID
  resolve: (bytes: BlockBytes | Promise<BlockBytes>) => void
  reject: (err: unknown) => void
}

/**
 * A run of leaves streamed from one gateway, or the part of one that was
 * handed to another gateway (see `split`).
 */
interface RunPart {
  entity: CID
  range: RunRange
  /** The part's leaves in stream order with their bytes in the entity; undefined when the range gives no sizes (then it is never split). */
  order: RunSpan[] | undefined
  /** Leaves this part's stream still owes: not delivered yet, not handed to another part. */
  owned: Map<string, RunLeaf>
  /** Leaves were handed to another part: once `owned` is empty, the rest of the stream is not wanted. */
  handedOn: boolean
  /** Set once the part has its gateway (and a permit). */
  gateway: Gateway | undefined
  /** Ends the stream: with the download, or early when all it still carries was handed on (reason HANDED_ON). */
  stop: AbortController
  signal: AbortSignal
}

/** One leaf of a run and the bytes it fills in the entity (inclusive). */
interface RunSpan {
  key: string
  cid: CID
  from: number
  to: number
}

/** Starts runs, streams them, and splits a slow one with a gateway left idle. */
export class RunScheduler {
  /** Blocks runs fetch (or have fetched) ahead of their `get()`, by block key. */
  readonly prefetched = new Map<string, Prefetched>()
  readonly #base: PoolBase
  readonly #blocks: BlockFetcher
  /** Run parts that have a gateway and are streaming. */
  readonly #parts = new Set<RunPart>()

  constructor (base: PoolBase, blocks: BlockFetcher) {
    this.#base = base
    this.#blocks = blocks
  }

  /**
   * Starts fetching `leaves`, consecutive leaves of the file node `entity`
   * that make up its bytes `range` (inclusive), as one CAR stream from one
   * gateway; each leaf's `get()` then takes its block from that stream. A leaf
   * the stream does not deliver (an error, a cut, a gateway without CAR
   * ranges) is fetched alone the usual way, so a run never costs more than
   * the blocks it saves. Aborting `signal` ends the run.
   *
   * @returns false, and nothing starts, when no gateway left can serve CAR ranges
   */
  prefetchRun (entity: CID, range: RunRange, leaves: CID[], signal: AbortSignal): boolean {
    if (signal.aborted || !this.#base.gateways.some((g) => !g.dropped && g.car !== false)) return false
    const run = new Map<string, RunLeaf>()
    // where each leaf lies, when the range says: the rest of a slow run can then go to another gateway
    const sizes = range.sizes
    const order: RunSpan[] | undefined = sizes !== undefined && sizes.length === leaves.length &&
      sizes.reduce((a, b) => a + b, 0) === range.to - range.from + 1
      ? []
      : undefined
    let at = range.from
    for (const [i, cid] of leaves.entries()) {
      const from = at
      at += sizes?.[i] ?? 0
      if (identityBytes(cid) !== undefined) continue
      checkMultihash(cid)
      const key = blockKey(cid)
      const known = this.prefetched.get(key)
      if (known !== undefined && !known.signal.aborted) {
        known.uses++
        continue
      }
      let resolve!: RunLeaf['resolve']
      let reject!: RunLeaf['reject']
      const promise = new Promise<BlockBytes>((res, rej) => { resolve = res; reject = rej })
      promise.catch(() => {}) // read by get(); a run nobody reads must not be an unhandled rejection
      this.prefetched.set(key, { promise, uses: 1, signal })
      run.set(key, { cid, resolve, reject })
      order?.push({ key, cid, from, to: at - 1 })
    }
    if (run.size > 0) {
      this.#run({ entity, range, order, owned: run, handedOn: false, gateway: undefined, stop: new AbortController(), signal })
    }
    return true
  }

  /** Streams `part` (from its gateway, or one found for it); what it does not deliver is fetched block by block. */
  #run (part: RunPart): void {
    const streaming = async (): Promise<void> => {
      try {
        if (part.gateway === undefined) part.gateway = await this.startRun(part.signal)
        if (part.gateway !== undefined) await this.#stream(part.gateway, part)
      } finally {
        // what the stream did not deliver: fetched alone, with the pool's retries and hedging
        for (const leaf of part.owned.values()) {
          if (part.signal.aborted) leaf.reject(part.signal.reason)
          else leaf.resolve(this.#blocks.fetch(leaf.cid, part.signal))
        }
        part.owned.clear()
      }
    }
    streaming().catch((err: unknown) => {
      for (const leaf of part.owned.values()) leaf.reject(err)
    })
  }

  /** A gateway for a run (its request counted) and a permit, or undefined when no gateway left serves CAR ranges (and `may` allows). */
  async startRun (signal: AbortSignal, may: (g: Gateway) => boolean = () => true, bySpeed = true): Promise<Gateway | undefined> {
    const capable = (): Gateway[] => this.#base.gateways.filter((g) => !g.dropped && g.car !== false && may(g))
    for (;;) {
      if (capable().length === 0) return undefined
      await this.#base.permits.acquire(signal)
      // runs are spread by the runs each gateway has in flight (its block requests are small beside them)
      const choice = this.#base.selector.pick(this.#base.now(), capable(), (g) => g.runs, bySpeed)
      const gateway = choice?.waitMs === 0 ? choice.gateway : undefined
      if (gateway !== undefined) {
        // counted at once: runs choosing in the same turn must see each other's load
        gateway.inFlight++
        gateway.runs++
        gateway.requests++
        return gateway
      }
      this.#base.permits.release()
      await this.#base.waitForChange(choice === undefined ? undefined : choice.gateway.blockedUntil, signal)
    }
  }

  /** Streams a run part from `gateway`, which holds a permit (and counts the request in flight) until the stream ends. */
  async #stream (gateway: Gateway, part: RunPart): Promise<void> {
    const { owned, signal } = part
    const expected = new Map<string, CID>()
    for (const [key, leaf] of owned) expected.set(key, leaf.cid)
    // the stream ends with the download, or early when the rest of it was handed on
    const onAbort = (): void => { part.stop.abort(signal.reason) }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    this.#parts.add(part)
    try {
      await this.carRequest(gateway, part.entity, part.range, expected, (key, bytes) => {
        const leaf = owned.get(key)
        if (leaf === undefined) return false // handed to another gateway meanwhile
        owned.delete(key)
        leaf.resolve(bytes)
        // what follows in this stream now comes from another gateway: stop here
        if (owned.size === 0 && part.handedOn) part.stop.abort(HANDED_ON)
        return true
      }, part.stop.signal)
    } catch (err) {
      if (signal.aborted) return
      if (err instanceof CarUnsupportedError) {
        if (gateway.car !== false) {
          gateway.car = false
          this.#base.emit({ type: 'gateway', gateway: gateway.url, state: 'healthy', reason: `does not serve CAR entity ranges; asked for single blocks (${err.message})` })
        }
        return
      }
      const error = asError(err, gateway.url)
      // a 404 skips the gateway for this run only: it may still have single blocks, the per-block fetches find out
      if (this.#base.penalize(gateway, error, part.entity.toString()).gateway === 'skip') gateway.missing()
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.#parts.delete(part)
      if (gateway.runs === 0) this.split()
    }
  }

  /**
   * One CAR request to `gateway`, which holds a permit and counts the request
   * (and a run) in flight until it ends. Each block `take` accepts counts as
   * delivered by the gateway (a CAR counts as one request per block it
   * delivers), the whole stream as one throughput sample, and a stream ended
   * by `signal` with reason HANDED_ON as a whole one. Errors are thrown for
   * the caller to judge.
   */
  async carRequest (gateway: Gateway, entity: CID, range: RunRange, expected: ReadonlyMap<string, CID> | undefined,
    take: (key: string, bytes: BlockBytes) => boolean, signal: AbortSignal): Promise<void> {
    await this.streamRequest(gateway, (onBlock) => fetchCarRun(this.#base.http, gateway.url, entity, range, expected, onBlock, {
      signal, maxBlockBytes: this.#base.maxBlockBytes, maxRetryAfterMs: this.#base.maxRetryAfterMs
    }), take, signal)
  }

  /**
   * The accounting of one CAR request (see {@link carRequest}) around
   * `request`, which streams the blocks into the `onBlock` it is given; `take`
   * may be async (a consumer that is behind slows the stream). A `tree`
   * stream's outcome says nothing of the gateway's CAR ranges.
   */
  async streamRequest (gateway: Gateway, request: (onBlock: (key: string, bytes: BlockBytes, cid: CID) => Promise<void>) => Promise<number>,
    take: (key: string, bytes: BlockBytes) => boolean | Promise<boolean>, signal: AbortSignal, kind: 'run' | 'tree' = 'run'): Promise<void> {
    const started = performance.now()
    let received = 0
    let delivered = 0
    try {
      try {
        await request(async (key, bytes, cid) => {
          if (!await take(key, bytes)) return
          if (++delivered > 1) gateway.requests++
          const length = blockLength(bytes)
          received += length
          this.#base.delivered(gateway, cid, length, performance.now() - started, false)
        })
      } catch (err) {
        if (signal.reason !== HANDED_ON) throw err
      }
      if (kind === 'tree') gateway.tree ??= true // one learned unable stays so
      else {
        gateway.car = true
        gateway.runFailed = false
        // a tree stream goes at the pace of the walk that takes its blocks: no measure of the gateway's speed
        this.#base.measure(gateway, received, performance.now() - started, false)
      }
    } catch (err) {
      if (kind === 'run') gateway.runFailed = true
      throw err
    } finally {
      gateway.inFlight--
      gateway.runs--
      this.#base.permits.release()
      this.#base.wake()
    }
  }

  /**
   * The end game of runs, as a download manager splits a slow segment: a
   * gateway that serves CAR ranges (its last run did not fail) and has no run
   * left takes the second half of the leaves still to come in the longest run
   * streaming elsewhere (a range of its own), unless it streams at less than
   * half that gateway's speed. The first gateway stops once it has sent its
   * half, so no leaf comes twice; whichever part ends first may split
   * another. Nothing happens while requests wait for a permit (work is
   * queued), or with hedging off (`hedgeAfterMs: 0`).
   */
  split (): void {
    if (this.#base.hedgeAfterMs === 0) return
    const now = this.#base.now()
    for (const idle of this.#base.gateways) {
      if (idle.dropped || idle.car !== true || idle.runFailed || idle.runs > 0 || idle.blockedUntil > now || idle.inFlight >= this.#base.perGateway) continue
      let longest: RunPart | undefined
      for (const part of this.#parts) {
        if (part.gateway === idle || part.order === undefined || part.signal.aborted || part.stop.signal.aborted) continue
        // half a run to a gateway that streams at less than half the speed would end later, not sooner
        const giver = part.gateway?.throughputBps
        if (giver !== undefined && idle.throughputBps !== undefined && idle.throughputBps < giver / 2) continue
        if (part.owned.size >= POOL_DEFAULTS.MIN_SPLIT_LEAVES && (longest === undefined || part.owned.size > longest.owned.size)) longest = part
      }
      if (longest?.order === undefined || longest.gateway === undefined || !this.#base.permits.tryAcquire()) return
      const from = longest
      const giver = longest.gateway
      const ahead = longest.order.filter((l) => from.owned.has(l.key))
      const handed = ahead.slice(Math.ceil(ahead.length / 2))
      const owned = new Map<string, RunLeaf>()
      for (const l of handed) {
        owned.set(l.key, from.owned.get(l.key) as RunLeaf)
        from.owned.delete(l.key)
      }
      from.handedOn = true
      const first = handed[0] as RunSpan
      const last = handed[handed.length - 1] as RunSpan
      idle.inFlight++
      idle.runs++
      idle.requests++
      this.#base.emit({ type: 'hedge', cid: first.cid.toString(), from: giver.url, to: idle.url })
      this.#run({
        entity: from.entity,
        range: { from: first.from, to: last.to, nodes: from.range.nodes, sizes: handed.map((l) => l.to - l.from + 1) },
        order: handed,
        owned,
        handedOn: false,
        gateway: idle,
        stop: new AbortController(),
        signal: from.signal
      })
    }
  }
}
