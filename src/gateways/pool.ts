/**
 * Verified blocks from a set of trustless gateways.
 *
 * Gateways are scored the way helia's trustless-gateway client scores them
 * (reliability = successes / (answered requests + errors × 3), unused gateways first),
 * weighted by their measured throughput and divided by their current load so
 * that every healthy gateway works in parallel. A gateway that sends one
 * invalid block is dropped for the rest of the pool's life; one that times
 * out, resets or answers 5xx backs off (exponential, with jitter, on its
 * consecutive errors); one that answers 429/503 with Retry-After waits as
 * told. Requests for a block already in flight are shared, a slow request is
 * hedged on a second gateway, the rest of a slow CAR run is split off to a
 * gateway left idle, and a FIFO semaphore bounds the requests in flight (and
 * so the memory: concurrency × maxBlockBytes). Leaves come in CAR runs where
 * a gateway serves them (`prefetchRun`), and a download's first bytes can be
 * streamed before its DAG is known (`prefetchEntity`).
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { CidgetError } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import type { BackoffOptions } from '../core/retry.js'
import { Semaphore, abortableSleep, raceAbort, type Sleep } from '../core/async.js'
import { MAX_BLOCK_BYTES, blockLength, checkMultihash, fetchRawBlock, identityBytes, joinBlock, type BlockBytes } from './block.js'
import { CarUnsupportedError, fetchCarRun, type RunRange } from './car.js'
import type { HttpClient } from './http.js'
import { EWMA_ALPHA, Gateway, MIN_THROUGHPUT_SAMPLE_BYTES, ewma, type GatewayStats } from './gateway.js'
import { HealthRegistry } from './health.js'
import { ScoredSelector } from './selector.js'

export type { GatewayStats } from './gateway.js'

/** The abort reason of a wake-up (something changed: a permit, a gateway); not an error. */
const WOKEN: unique symbol = Symbol('woken')
/** The signal of a wait that nothing but its own end stops. */
const NEVER = new AbortController().signal

/** Every default of {@link GatewayPool} in one block. */
export const POOL_DEFAULTS = {
  /** Block requests in flight over all gateways. */
  CONCURRENCY: 16,
  /** Block requests in flight on one gateway. */
  PER_GATEWAY_CONCURRENCY: 8,
  /** Failed attempts per block, per gateway in the pool (at least {@link POOL_DEFAULTS.MIN_ATTEMPTS_PER_BLOCK} in all). */
  ATTEMPTS_PER_GATEWAY: 3,
  MIN_ATTEMPTS_PER_BLOCK: 3,
  /** Adaptive hedging: never hedge sooner than this. */
  HEDGE_MIN_MS: 250,
  /** Adaptive hedging: hedge after this many times the pool's EWMA block latency. */
  HEDGE_LATENCY_FACTOR: 4,
  /** Adaptive hedging before any block has arrived (no latency known yet). */
  HEDGE_INITIAL_MS: 1_000,
  /** Weight of the newest sample in the latency and throughput EWMAs. */
  EWMA_ALPHA,
  /** Blocks smaller than this do not count towards a gateway's throughput. */
  MIN_THROUGHPUT_SAMPLE_BYTES,
  /** A run streaming with at least this many leaves still to come gives half of them to a gateway left idle. */
  MIN_SPLIT_LEAVES: 4
} as const

export type PoolEvent =
  | { type: 'block', cid: string, gateway: string, bytes: number, ms: number }
  | { type: 'retry', cid: string, gateway: string, code: string, message: string, delayMs: number }
  | { type: 'hedge', cid: string, from: string, to: string }
  | { type: 'gateway', gateway: string, state: 'dropped' | 'blocked' | 'healthy', reason: string }

export interface GatewayPoolInit {
  /** Base URLs (`https://host`), at least one; trailing slashes are removed, duplicates ignored. */
  gateways: string[]
  http: HttpClient
  /** Block requests in flight over all gateways (hedges included). @default 16 */
  concurrency?: number
  /** Block requests in flight on one gateway. @default 8 */
  perGatewayConcurrency?: number
  /** Largest block accepted. @default MAX_BLOCK_BYTES (2 MiB) */
  maxBlockBytes?: number
  /** Failed attempts per block before CIDGET_ERR_BLOCK_UNAVAILABLE. @default max(3, 3 × gateways.length) */
  maxAttemptsPerBlock?: number
  /**
   * Start a second request on another gateway when the only one in flight for
   * a block has had no answer for this long. 0 disables hedging.
   * @default adaptive: max(250 ms, 4 × the pool's EWMA block latency); 1 s before the first block
   */
  hedgeAfterMs?: number
  /** Backoff of a failing gateway, on its consecutive errors. @default the DEFAULTS backoff (1 s, ×2, ≤ 30 s, ±20 %) */
  backoff?: BackoffOptions
  /** Longest wait a Retry-After imposes on a gateway. @default DEFAULTS.MAX_RETRY_AFTER_MS (60 s) */
  maxRetryAfterMs?: number
  /** Clock for Retry-After and backoff deadlines. @default Date.now */
  now?: () => number
  /** Every wait (backoff, Retry-After, hedge delay) goes through this; it must reject with `signal.reason` when aborted. */
  sleep?: Sleep
  /** Randomness for the backoff jitter, unless `backoff.random` is given. @default Math.random */
  random?: () => number
  onEvent?: (e: PoolEvent) => void
  /**
   * The process-wide health of gateways (their back-off), shared with other
   * pools; its own back-off options and clock then apply to the back-off.
   * @default one of this pool's own, with this pool's backoff, maxRetryAfterMs and now
   */
  health?: HealthRegistry
}

const INIT_KEYS = new Set<string>([
  'gateways', 'http', 'concurrency', 'perGatewayConcurrency', 'maxBlockBytes', 'maxAttemptsPerBlock',
  'hedgeAfterMs', 'backoff', 'maxRetryAfterMs', 'now', 'sleep', 'random', 'onEvent', 'health'
])

/** A block a run fetches (or has fetched) ahead of its `get()`. */
interface Prefetched {
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
 * handed to another gateway (see `#split`).
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

/**
 * The first bytes of an entity streamed before its DAG is known (see
 * `prefetchEntity`): its root, the inner nodes on the way and the first
 * leaves, in one request instead of one round trip per level.
 */
interface EntityStream {
  /** Verified blocks that arrived and were not taken yet. */
  blocks: Map<string, BlockBytes>
  /** Blocks the caller said it will ask for from this stream: key → times. */
  wanted: Map<string, number>
  done: boolean
  /** The invalid or oversized block that ended the stream (and dropped its gateway), if one did. */
  error: CidgetError | undefined
  /** Ends the request: with the download, or (reason HANDED_ON) once nothing is waited for from it. */
  stop: AbortController
}

/** What a caller of `prefetchEntity` tells the pool while the stream runs. */
export interface EntityPrefetch {
  /**
   * The caller will ask for `cid` (once more), and the stream carries it: a
   * get() of it waits for the stream (a hedge delay at most) rather than
   * asking a gateway. A get() of a block not expected takes it from the
   * stream only if it is already there.
   */
  expect: (cid: CID) => void
}

/** The abort reason of a run part stopped because the rest of its stream went to another gateway; not an error. */
const HANDED_ON: unique symbol = Symbol('handed on')

/** The state of fetching one block, shared by its attempts. */
interface BlockFetch {
  cid: CID
  id: string
  signal: AbortSignal
  /** Gateways that answered 404/410 for this block. */
  notFound: Set<Gateway>
  failures: number
  lastError: CidgetError | undefined
  running: Set<Attempt>
}

interface Attempt {
  gateway: Gateway
  controller: AbortController
  startedAt: number
  /** When to hedge this attempt if it is still the only one in flight. */
  hedgeAt: number | undefined
  done: Promise<AttemptResult>
}

type AttemptResult =
  | { attempt: Attempt, ok: true, bytes: Uint8Array, ms: number }
  | { attempt: Attempt, ok: false, aborted: boolean, error: CidgetError }

interface Shared {
  promise: Promise<Uint8Array>
  controller: AbortController
  waiters: number
  settled: boolean
}

const HEDGE = 'hedge' as const

/**
 * A pool of trustless gateways that returns verified blocks.
 *
 * @example
 * ```ts
 * const pool = new GatewayPool({ gateways: ['https://trustless-gateway.link', 'https://ipfs.io'], http: new HttpClient() })
 * const bytes = await pool.get(cid, signal) // hashed against cid before it is returned
 * ```
 */
export class GatewayPool {
  readonly #gateways: Gateway[]
  readonly #http: HttpClient
  readonly #perGateway: number
  readonly #maxBlockBytes: number
  readonly #maxAttempts: number
  readonly #hedgeAfterMs: number | undefined
  readonly #maxRetryAfterMs: number
  readonly #now: () => number
  readonly #sleep: Sleep
  readonly #onEvent: ((e: PoolEvent) => void) | undefined
  readonly #permits: Semaphore
  readonly #selector: ScoredSelector
  readonly #pending = new Map<string, Shared>()
  readonly #prefetched = new Map<string, Prefetched>()
  /** Run parts that have a gateway and are streaming. */
  readonly #parts = new Set<RunPart>()
  #entity: EntityStream | undefined
  /** Called when a request ends: capacity, blocks and drops may have changed. */
  readonly #wakers = new Set<() => void>()
  #latencyMs: number | undefined

  constructor (init: GatewayPoolInit) {
    checkInit(init)
    const urls = [...new Set(init.gateways.map((g) => g.replace(/\/+$/, '')))]
    const random = init.backoff?.random ?? init.random
    const health = init.health ?? new HealthRegistry({
      keep: urls,
      backoff: { ...init.backoff, ...(random === undefined ? {} : { random }) },
      ...(init.maxRetryAfterMs === undefined ? {} : { maxRetryAfterMs: init.maxRetryAfterMs }),
      ...(init.now === undefined ? {} : { now: init.now })
    })
    this.#gateways = urls.map((url) => new Gateway(health.get(url)))
    this.#http = init.http
    this.#permits = new Semaphore(init.concurrency ?? POOL_DEFAULTS.CONCURRENCY)
    this.#perGateway = init.perGatewayConcurrency ?? POOL_DEFAULTS.PER_GATEWAY_CONCURRENCY
    this.#selector = new ScoredSelector(this.#gateways, this.#perGateway)
    this.#maxBlockBytes = init.maxBlockBytes ?? MAX_BLOCK_BYTES
    this.#maxAttempts = init.maxAttemptsPerBlock ??
      Math.max(POOL_DEFAULTS.MIN_ATTEMPTS_PER_BLOCK, POOL_DEFAULTS.ATTEMPTS_PER_GATEWAY * urls.length)
    this.#hedgeAfterMs = init.hedgeAfterMs
    this.#maxRetryAfterMs = init.maxRetryAfterMs ?? DEFAULTS.MAX_RETRY_AFTER_MS
    this.#now = init.now ?? Date.now
    this.#sleep = init.sleep ?? abortableSleep
    this.#onEvent = init.onEvent
  }

  /**
   * A verified block. Requests for the same block (same multihash) in flight
   * at once share one fetch; the returned array is shared too, so do not
   * mutate it. Identity CIDs return their inline bytes without a request.
   * Aborting `signal` rejects at once with `signal.reason`; the fetch itself
   * stops when no caller waits for it any more.
   *
   * @throws {CidgetError} CIDGET_ERR_BLOCK_UNAVAILABLE after `maxAttemptsPerBlock`
   *   failed attempts or when every gateway is dropped or answered 404 (the
   *   last error is the cause); CIDGET_ERR_NOT_FOUND when every gateway
   *   answered 404; CIDGET_ERR_DAG_INVALID for a hash function cidget cannot verify.
   */
  async get (cid: CID, signal?: AbortSignal): Promise<Uint8Array> {
    return joinBlock(await this.getPieces(cid, signal))
  }

  /**
   * {@link get}, but a leaf that came in a CAR run is returned as the pieces
   * it arrived in (views of the network's chunks; see `BlockBytes`) instead of
   * being copied into one array: for a caller that only hashes or writes it.
   */
  async getPieces (cid: CID, signal?: AbortSignal): Promise<BlockBytes> {
    signal?.throwIfAborted()
    const inline = identityBytes(cid)
    if (inline !== undefined) return inline
    checkMultihash(cid)
    const key = blockKey(cid)
    // a block the entity stream was to bring but did not: if a bad block ended it, that is this fetch's first failure
    let missed: CidgetError | undefined
    const stream = this.#entity
    if (stream !== undefined) {
      // a leaf a run brings is taken from the run (a copy the stream carried too is let go)
      if (this.#prefetched.has(key) && !stream.wanted.has(key)) stream.blocks.delete(key)
      else {
        const streamed = await this.#fromEntity(stream, key, signal)
        if (streamed !== undefined) return streamed
        if (stream.wanted.has(key)) missed = stream.error
      }
    }
    const early = this.#prefetched.get(key)
    if (early !== undefined) {
      if (--early.uses <= 0 || early.signal.aborted) this.#prefetched.delete(key)
      if (!early.signal.aborted) return await raceAbort(early.promise, signal)
    }
    let shared = this.#pending.get(key)
    if (shared === undefined) {
      const controller = new AbortController()
      const created: Shared = { promise: this.#fetch(cid, controller.signal, missed), controller, waiters: 0, settled: false }
      const settle = (): void => {
        created.settled = true
        if (this.#pending.get(key) === created) this.#pending.delete(key)
      }
      created.promise.then(settle, settle)
      this.#pending.set(key, created)
      shared = created
    }
    const mine = shared
    mine.waiters++
    try {
      return await raceAbort(mine.promise, signal)
    } finally {
      mine.waiters--
      if (mine.waiters === 0 && !mine.settled) {
        // Nobody wants this block any more: stop fetching it, and let a later get() start afresh.
        if (this.#pending.get(key) === mine) this.#pending.delete(key)
        mine.controller.abort(signal?.reason)
      }
    }
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
    if (signal.aborted || !this.#gateways.some((g) => !g.dropped && g.car !== false)) return false
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
      const known = this.#prefetched.get(key)
      if (known !== undefined && !known.signal.aborted) {
        known.uses++
        continue
      }
      let resolve!: RunLeaf['resolve']
      let reject!: RunLeaf['reject']
      const promise = new Promise<BlockBytes>((res, rej) => { resolve = res; reject = rej })
      promise.catch(() => {}) // read by get(); a run nobody reads must not be an unhandled rejection
      this.#prefetched.set(key, { promise, uses: 1, signal })
      run.set(key, { cid, resolve, reject })
      order?.push({ key, cid, from, to: at - 1 })
    }
    if (run.size > 0) {
      this.#run({ entity, range, order, owned: run, handedOn: false, gateway: undefined, stop: new AbortController(), signal })
    }
    return true
  }

  /**
   * Streams bytes `range` of `entity` as one CAR from one gateway, before
   * anything of its DAG is known: its root, the inner nodes on the way and
   * the leaves of those bytes come in one request instead of one round trip
   * per level. Every block is verified against its own CID as it arrives and
   * is kept until a get() takes it; `entity` itself is expected, and the
   * caller says which other blocks it will ask for ({@link EntityPrefetch.expect}).
   * Best effort: whatever the stream does not bring in time (an error, a slow
   * or stalled gateway, one that does not serve it) is fetched the usual
   * way, the stream is cut once nothing is waited for from it, and only an
   * invalid block counts against the gateway. One such stream per pool.
   *
   * @returns undefined, and nothing starts, when no gateway may serve CAR ranges or one was started already
   */
  prefetchEntity (entity: CID, range: RunRange, signal: AbortSignal): EntityPrefetch | undefined {
    if (signal.aborted || this.#entity !== undefined || identityBytes(entity) !== undefined ||
      !this.#gateways.some((g) => !g.dropped && g.car !== false)) return undefined
    checkMultihash(entity)
    const stream: EntityStream = {
      blocks: new Map(),
      wanted: new Map([[blockKey(entity), 1]]),
      done: false,
      error: undefined,
      stop: new AbortController()
    }
    this.#entity = stream
    const onAbort = (): void => { stream.stop.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    const streaming = async (): Promise<void> => {
      const gateway = await this.#startRun(signal)
      if (gateway === undefined) return
      // what is kept for get(): the range's bytes twice over at most (a gateway that sends more than
      // the range, up to the CAR allowance, is not held in memory); a block asked for is always kept
      const keep = 2 * (range.to - range.from + 1)
      let kept = 0
      try {
        await this.#carRequest(gateway, entity, range, undefined, (key, bytes) => {
          const length = blockLength(bytes)
          if (kept + length > keep && !stream.wanted.has(key)) return false
          kept += length
          stream.blocks.set(key, bytes)
          this.#wake() // a get() may wait for it
          return true
        }, stream.stop.signal)
      } catch (err) {
        // a gateway may refuse ranges of what is not a file, or not have it: the usual requests find out
        if (signal.aborted || err instanceof CarUnsupportedError) return
        const error = asError(err, gateway.url)
        if (error.code === 'CIDGET_ERR_NOT_FOUND') return
        if (error.code === 'CIDGET_ERR_BLOCK_INVALID' || error.code === 'CIDGET_ERR_BLOCK_TOO_LARGE') stream.error = error
        this.#penalize(gateway, error)
      } finally {
        if (gateway.runs === 0) this.#split()
      }
    }
    streaming().catch(() => {}).finally(() => {
      // blocks not taken yet stay (at most twice the range, see `keep`): the walk may get to them later
      stream.done = true
      signal.removeEventListener('abort', onAbort)
      this.#wake()
    })
    return {
      expect: (cid) => {
        if (stream.done || identityBytes(cid) !== undefined) return
        const key = blockKey(cid)
        stream.wanted.set(key, (stream.wanted.get(key) ?? 0) + 1)
      }
    }
  }

  /** A block of the entity stream: there, or coming (if expected, waited for a hedge delay at most); undefined otherwise. */
  async #fromEntity (stream: EntityStream, key: string, signal: AbortSignal | undefined): Promise<BlockBytes | undefined> {
    let deadline: number | undefined
    for (;;) {
      const bytes = stream.blocks.get(key)
      if (bytes !== undefined) {
        // taken for the last time it was expected: let go
        if (!unwant(stream, key)) stream.blocks.delete(key)
        return bytes
      }
      if (stream.done || !stream.wanted.has(key)) return undefined
      // a block is waited for a hedge delay at most: then it is asked for the usual way (a slow
      // gateway does not hold the start of the file), and a stream nobody waits for any more is cut
      const delay = this.#hedgeDelay()
      if (delay !== undefined) deadline ??= this.#now() + delay
      if (!await this.#waitForChange(deadline, signal ?? NEVER)) {
        unwant(stream, key)
        if (stream.wanted.size === 0) stream.stop.abort(HANDED_ON)
        return undefined
      }
    }
  }

  stats (): GatewayStats[] {
    return this.#gateways.map((g) => g.stats())
  }

  // --- a run of leaves -------------------------------------------------------------

  /** Streams `part` (from its gateway, or one found for it); what it does not deliver is fetched block by block. */
  #run (part: RunPart): void {
    const streaming = async (): Promise<void> => {
      try {
        if (part.gateway === undefined) part.gateway = await this.#startRun(part.signal)
        if (part.gateway !== undefined) await this.#stream(part.gateway, part)
      } finally {
        // what the stream did not deliver: fetched alone, with the pool's retries and hedging
        for (const leaf of part.owned.values()) {
          if (part.signal.aborted) leaf.reject(part.signal.reason)
          else leaf.resolve(this.#fetch(leaf.cid, part.signal))
        }
        part.owned.clear()
      }
    }
    streaming().catch((err: unknown) => {
      for (const leaf of part.owned.values()) leaf.reject(err)
    })
  }

  /** A gateway for a run (its request counted) and a permit, or undefined when no gateway left serves CAR ranges. */
  async #startRun (signal: AbortSignal): Promise<Gateway | undefined> {
    const capable = (): Gateway[] => this.#gateways.filter((g) => !g.dropped && g.car !== false)
    for (;;) {
      if (capable().length === 0) return undefined
      await this.#permits.acquire(signal)
      // runs are spread by the runs each gateway has in flight (its block requests are small beside them)
      const choice = this.#selector.pick(this.#now(), capable(), (g) => g.runs)
      const gateway = choice?.waitMs === 0 ? choice.gateway : undefined
      if (gateway !== undefined) {
        // counted at once: runs choosing in the same turn must see each other's load
        gateway.inFlight++
        gateway.runs++
        gateway.requests++
        return gateway
      }
      this.#permits.release()
      await this.#waitForChange(choice === undefined ? undefined : choice.gateway.blockedUntil, signal)
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
      await this.#carRequest(gateway, part.entity, part.range, expected, (key, bytes) => {
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
          this.#emit({ type: 'gateway', gateway: gateway.url, state: 'healthy', reason: `does not serve CAR entity ranges; asked for single blocks (${err.message})` })
        }
        return
      }
      const error = asError(err, gateway.url)
      if (error.code === 'CIDGET_ERR_NOT_FOUND') {
        // it may still have single blocks: let the per-block fetches find out
        gateway.missing()
        return
      }
      this.#penalize(gateway, error)
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.#parts.delete(part)
      if (gateway.runs === 0) this.#split()
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
  async #carRequest (gateway: Gateway, entity: CID, range: RunRange, expected: ReadonlyMap<string, CID> | undefined,
    take: (key: string, bytes: BlockBytes) => boolean, signal: AbortSignal): Promise<void> {
    const started = performance.now()
    let received = 0
    let delivered = 0
    try {
      try {
        await fetchCarRun(this.#http, gateway.url, entity, range, expected, (key, bytes, cid) => {
          if (!take(key, bytes)) return
          if (++delivered > 1) gateway.requests++
          const length = blockLength(bytes)
          received += length
          this.#delivered(gateway, cid.toString(), length, performance.now() - started, false)
        }, { signal, maxBlockBytes: this.#maxBlockBytes, maxRetryAfterMs: this.#maxRetryAfterMs })
      } catch (err) {
        if (signal.reason !== HANDED_ON) throw err
      }
      gateway.car = true
      gateway.runFailed = false
      this.#measure(gateway, received, performance.now() - started, false)
    } catch (err) {
      gateway.runFailed = true
      throw err
    } finally {
      gateway.inFlight--
      gateway.runs--
      this.#permits.release()
      this.#wake()
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
  #split (): void {
    if (this.#hedgeAfterMs === 0) return
    const now = this.#now()
    for (const idle of this.#gateways) {
      if (idle.dropped || idle.car !== true || idle.runFailed || idle.runs > 0 || idle.blockedUntil > now || idle.inFlight >= this.#perGateway) continue
      let longest: RunPart | undefined
      for (const part of this.#parts) {
        if (part.gateway === idle || part.order === undefined || part.signal.aborted || part.stop.signal.aborted) continue
        // half a run to a gateway that streams at less than half the speed would end later, not sooner
        const giver = part.gateway?.throughputBps
        if (giver !== undefined && idle.throughputBps !== undefined && idle.throughputBps < giver / 2) continue
        if (part.owned.size >= POOL_DEFAULTS.MIN_SPLIT_LEAVES && (longest === undefined || part.owned.size > longest.owned.size)) longest = part
      }
      if (longest?.order === undefined || longest.gateway === undefined || !this.#permits.tryAcquire()) return
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
      this.#emit({ type: 'hedge', cid: first.cid.toString(), from: giver.url, to: idle.url })
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

  // --- one block ---------------------------------------------------------------

  async #fetch (cid: CID, signal: AbortSignal, lastError?: CidgetError): Promise<Uint8Array> {
    const block: BlockFetch = {
      cid,
      id: cid.toString(),
      signal,
      notFound: new Set(),
      failures: 0,
      lastError,
      running: new Set()
    }
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_resolve, reject) => {
      if (signal.aborted) reject(signal.reason)
      else {
        onAbort = () => reject(signal.reason)
        signal.addEventListener('abort', onAbort, { once: true })
      }
    })
    aborted.catch(() => {})
    try {
      for (;;) {
        if (block.running.size === 0) block.running.add(await this.#start(block))
        const hedge = this.#armHedge(block)
        let result: AttemptResult | typeof HEDGE
        try {
          result = await Promise.race([aborted, hedge.promise, ...[...block.running].map(async (a) => await a.done)])
        } finally {
          hedge.cancel()
        }
        if (result === HEDGE) {
          this.#hedge(block)
          continue
        }
        block.running.delete(result.attempt)
        if (result.ok) return result.bytes
        if (result.aborted) {
          signal.throwIfAborted()
          continue
        }
        this.#failed(block, result.attempt.gateway, result.error)
      }
    } finally {
      // one listener per block on a signal shared by the whole download: remove it, or they pile up
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      for (const attempt of block.running) attempt.controller.abort(signal.aborted ? signal.reason : new Error('another gateway delivered the block first'))
    }
  }

  /** Waits for a gateway and a permit, then sends a request. Throws when the block cannot be had. */
  async #start (block: BlockFetch): Promise<Attempt> {
    for (;;) {
      const terminal = this.#terminal(block)
      if (terminal !== undefined) throw terminal
      await this.#permits.acquire(block.signal)
      const choice = this.#selector.pick(this.#now(), this.#candidates(block))
      if (choice?.waitMs === 0) return this.#launch(block, choice.gateway)
      this.#permits.release()
      await this.#waitForChange(choice === undefined ? undefined : choice.gateway.blockedUntil, block.signal)
    }
  }

  /** A second request on another gateway, if one is free now (never waits, never jumps the permit queue). */
  #hedge (block: BlockFetch): void {
    const [lone] = block.running
    if (lone === undefined || block.running.size !== 1 || this.#terminal(block) !== undefined) return
    if (this.#permits.tryAcquire()) {
      const gateway = this.#selector.best(this.#now(), this.#candidates(block))
      if (gateway !== undefined) {
        const attempt = this.#launch(block, gateway)
        block.running.add(attempt)
        this.#emit({ type: 'hedge', cid: block.id, from: lone.gateway.url, to: gateway.url })
        return
      }
      this.#permits.release()
    }
    // Nothing free: look again after another hedge delay.
    const delay = this.#hedgeDelay()
    lone.hedgeAt = delay === undefined ? undefined : this.#now() + delay
  }

  #armHedge (block: BlockFetch): { promise: Promise<typeof HEDGE>, cancel: () => void } {
    const never = { promise: new Promise<typeof HEDGE>(() => {}), cancel: () => {} }
    const [lone] = block.running
    if (lone === undefined || block.running.size !== 1) return never
    if (lone.hedgeAt === undefined) {
      const delay = this.#hedgeDelay()
      if (delay === undefined) return never
      lone.hedgeAt = lone.startedAt + delay
    }
    // Another gateway that could take a hedge must exist at all, or the timer would spin.
    if (!this.#gateways.some((g) => g !== lone.gateway && !g.dropped && !block.notFound.has(g))) return never
    const controller = new AbortController()
    const promise = this.#sleep(Math.max(0, lone.hedgeAt - this.#now()), controller.signal)
      .then(() => HEDGE, async () => await new Promise<typeof HEDGE>(() => {}))
    return { promise, cancel: () => controller.abort(WOKEN) }
  }

  #hedgeDelay (): number | undefined {
    if (this.#hedgeAfterMs !== undefined) return this.#hedgeAfterMs === 0 ? undefined : this.#hedgeAfterMs
    if (this.#latencyMs === undefined) return POOL_DEFAULTS.HEDGE_INITIAL_MS
    return Math.max(POOL_DEFAULTS.HEDGE_MIN_MS, POOL_DEFAULTS.HEDGE_LATENCY_FACTOR * this.#latencyMs)
  }

  /** Sends one request; the attempt owns one permit until it ends. */
  #launch (block: BlockFetch, gateway: Gateway): Attempt {
    const controller = new AbortController()
    const onAbort = (): void => controller.abort(block.signal.reason)
    if (block.signal.aborted) onAbort()
    else block.signal.addEventListener('abort', onAbort, { once: true })
    gateway.inFlight++
    gateway.requests++
    // The callbacks below run after `attempt` is assigned: a promise never settles synchronously.
    const done = fetchRawBlock(this.#http, gateway.url, block.cid, {
      signal: controller.signal,
      maxBytes: this.#maxBlockBytes,
      maxRetryAfterMs: this.#maxRetryAfterMs
    }).then(
      ({ bytes, ms }): AttemptResult => {
        this.#succeeded(block, gateway, bytes, ms)
        return { attempt, ok: true, bytes, ms }
      },
      (err: unknown): AttemptResult => {
        if (controller.signal.aborted) return { attempt, ok: false, aborted: true, error: asError(err, gateway.url) }
        const error = asError(err, gateway.url)
        this.#record(block, gateway, error)
        return { attempt, ok: false, aborted: false, error }
      }
    ).finally(() => {
      gateway.inFlight--
      block.signal.removeEventListener('abort', onAbort)
      this.#permits.release()
      this.#wake()
    })
    const attempt: Attempt = { gateway, controller, startedAt: this.#now(), hedgeAt: undefined, done }
    return attempt
  }

  #succeeded (block: BlockFetch, gateway: Gateway, bytes: Uint8Array, ms: number): void {
    this.#delivered(gateway, block.id, bytes.length, ms)
  }

  /** Counts a verified block that `gateway` delivered `ms` after the request; a block of a run is not measured alone (`measure` false: the run is one sample). */
  #delivered (gateway: Gateway, id: string, bytes: number, ms: number, measure = true): void {
    if (gateway.delivered(bytes) && !gateway.dropped) this.#emit({ type: 'gateway', gateway: gateway.url, state: 'healthy', reason: 'served a valid block again' })
    if (measure) this.#measure(gateway, bytes, ms, true)
    this.#emit({ type: 'block', cid: id, gateway: gateway.url, bytes, ms: Math.round(ms) })
  }

  /** Feeds one transfer into the gateway's EWMAs (see Gateway.measure) and a block's time into the pool's latency. */
  #measure (gateway: Gateway, bytes: number, ms: number, latency: boolean): void {
    const elapsed = gateway.measure(bytes, ms, latency)
    if (latency) this.#latencyMs = ewma(this.#latencyMs, elapsed, EWMA_ALPHA)
  }

  /** Scores a failed request against its gateway (runs even when the block's fetch has moved on). */
  #record (block: BlockFetch, gateway: Gateway, error: CidgetError): void {
    switch (error.code) {
      case 'CIDGET_ERR_DAG_INVALID':
        return // the CID's fault, not the gateway's
      case 'CIDGET_ERR_NOT_FOUND':
        // The gateway lacks this block; it may well have the others.
        gateway.missing()
        block.notFound.add(gateway)
        return
      default:
        this.#penalize(gateway, error)
    }
  }

  /** An invalid block drops the gateway from this pool; any other failure backs it off for every pool (see Gateway.penalize). */
  #penalize (gateway: Gateway, error: CidgetError): void {
    const verdict = gateway.penalize(error)
    if (verdict !== undefined) this.#emit({ type: 'gateway', gateway: gateway.url, ...verdict })
  }

  /** Counts a failed attempt of this block and announces the retry. */
  #failed (block: BlockFetch, gateway: Gateway, error: CidgetError): void {
    if (error.code === 'CIDGET_ERR_DAG_INVALID') throw error
    block.failures++
    block.lastError = error
    // The next loop turn either waits on the attempt still running or starts one (#start throws when the budget is spent).
    if (block.running.size === 0 && this.#terminal(block) !== undefined) return
    this.#emit({ type: 'retry', cid: block.id, gateway: gateway.url, code: error.code, message: error.message, delayMs: block.running.size > 0 ? 0 : this.#selector.waitEstimate(this.#now(), this.#candidates(block)) })
  }

  /** The error that ends this block's fetch, if it is over. */
  #terminal (block: BlockFetch): CidgetError | undefined {
    const { id, lastError } = block
    const last = lastError === undefined ? '' : ` (last error: ${lastError.message})`
    const cause = lastError === undefined ? {} : { cause: lastError }
    if (!this.#gateways.some((g) => !g.dropped && !block.notFound.has(g))) {
      if (block.notFound.size === this.#gateways.length) {
        return new CidgetError('CIDGET_ERR_NOT_FOUND', `No gateway has block ${id}: all ${this.#gateways.length} answered 404`, { ...cause, status: 404 })
      }
      const dropped = this.#gateways.filter((g) => g.dropped).length
      // every gateway left sent a block over the limit (or a wrong one): that is the answer, not "unavailable"
      if (lastError !== undefined && (lastError.code === 'CIDGET_ERR_BLOCK_TOO_LARGE' || lastError.code === 'CIDGET_ERR_BLOCK_INVALID') && block.notFound.size === 0) {
        return new CidgetError(lastError.code, `No gateway delivered a valid block ${id}: ${dropped} dropped${last}`, cause)
      }
      return new CidgetError('CIDGET_ERR_BLOCK_UNAVAILABLE', `No gateway can deliver block ${id}: ${dropped} dropped for invalid blocks, ${block.notFound.size} answered 404${last}`, cause)
    }
    if (block.failures >= this.#maxAttempts) {
      return new CidgetError('CIDGET_ERR_BLOCK_UNAVAILABLE', `No gateway delivered block ${id} in ${block.failures} attempts${last}`, cause)
    }
    return undefined
  }

  // --- choosing a gateway ----------------------------------------------------------

  /** Not dropped, not known to lack the block, not already asked for it right now. */
  #candidates (block: BlockFetch): Gateway[] {
    const busy = new Set([...block.running].map((a) => a.gateway))
    return this.#gateways.filter((g) => !g.dropped && !block.notFound.has(g) && !busy.has(g))
  }

  /**
   * Waits until `until` (a `now()` time) or until something changes (a request ends, the entity
   * stream brings a block or ends), whichever is first: true when woken by a change.
   */
  async #waitForChange (until: number | undefined, signal: AbortSignal): Promise<boolean> {
    signal.throwIfAborted()
    const wake = new AbortController()
    const onAbort = (): void => wake.abort(signal.reason)
    // a plain value as the reason: abort() without one builds a DOMException (and its stack) per wake-up
    const waker = (): void => wake.abort(WOKEN)
    signal.addEventListener('abort', onAbort, { once: true })
    this.#wakers.add(waker)
    try {
      if (until === undefined) {
        await new Promise<void>((resolve) => wake.signal.addEventListener('abort', () => resolve(), { once: true }))
      } else {
        await this.#sleep(Math.max(0, until - this.#now()), wake.signal)
      }
    } catch (err) {
      if (!wake.signal.aborted || signal.aborted) throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.#wakers.delete(waker)
    }
    signal.throwIfAborted()
    return wake.signal.aborted
  }

  #wake (): void {
    const wakers = [...this.#wakers]
    this.#wakers.clear()
    for (const waker of wakers) waker()
  }

  #emit (event: PoolEvent): void {
    try {
      this.#onEvent?.(event)
    } catch {
      // A listener's failure must not break a fetch.
    }
  }
}

// --- helpers ---------------------------------------------------------------------

/** One expectation of `key` from the entity stream met or given up; true while more remain. */
function unwant (stream: EntityStream, key: string): boolean {
  const wanted = stream.wanted.get(key) ?? 0
  if (wanted > 1) {
    stream.wanted.set(key, wanted - 1)
    return true
  }
  stream.wanted.delete(key)
  return false
}

/** Blocks are shared by multihash: the same bytes under a CIDv0 and a CIDv1 are one block. */
function blockKey (cid: CID): string {
  return Buffer.from(cid.multihash.bytes).toString('base64')
}

function asError (err: unknown, gateway: string): CidgetError {
  if (err instanceof CidgetError) return err
  const detail = err instanceof Error ? err.message : String(err)
  return new CidgetError('CIDGET_ERR_NETWORK', `${gateway}: ${detail}`, { cause: err, gateway })
}

function checkInit (init: GatewayPoolInit): void {
  const bad = (what: string): never => {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `GatewayPool: ${what}`)
  }
  for (const key of Object.keys(init)) {
    if (!INIT_KEYS.has(key)) bad(`unknown option "${key}"`)
  }
  if (!Array.isArray(init.gateways) || init.gateways.length === 0) bad('gateways must list at least one gateway URL')
  for (const g of init.gateways) {
    let url: URL | undefined
    try {
      url = new URL(g)
    } catch {
      url = undefined
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) bad(`gateway "${String(g)}" is not an http(s) URL`)
  }
  if (init.http === undefined) bad('http (an HttpClient) is required')
  const positive = (name: keyof GatewayPoolInit): void => {
    const v = init[name]
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 1)) bad(`${name} must be a positive integer, got ${String(v)}`)
  }
  positive('concurrency')
  positive('perGatewayConcurrency')
  positive('maxBlockBytes')
  positive('maxAttemptsPerBlock')
  const nonNegative = (name: 'hedgeAfterMs' | 'maxRetryAfterMs'): void => {
    const v = init[name]
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) bad(`${name} must be a number >= 0, got ${String(v)}`)
  }
  nonNegative('hedgeAfterMs')
  nonNegative('maxRetryAfterMs')
}
