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
 * This file is the façade; each job has its module: gateway.ts and health.ts
 * (a gateway's counters, scores and back-off), selector.ts (the choice),
 * block-fetch.ts (one block, retried and hedged), car-runs.ts (CAR runs and
 * their end game), entity.ts (the entity stream), pool-base.ts (what they share).
 * What a failure does to a gateway and to a block is core/retry.ts's `decideRetry`
 * (block scope); the pool counts and carries it out.
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { CidgetError } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import type { BackoffOptions } from '../core/retry.js'
import { Semaphore, abortableSleep, raceAbort, type Sleep } from '../core/async.js'
import { MAX_BLOCK_BYTES, blockKey, checkMultihash, identityBytes, joinBlock, type BlockBytes } from './block.js'
import type { RunRange } from './car.js'
import type { HttpClient } from './http.js'
import { Gateway, type GatewayStats } from './gateway.js'
import { HealthRegistry } from './health.js'
import { ScoredSelector } from './selector.js'
import { POOL_DEFAULTS, PoolBase, type PoolEvent } from './pool-base.js'
import { BlockFetcher } from './block-fetch.js'
import { RunScheduler } from './car-runs.js'
import { EntityPrefetcher, type EntityPrefetch } from './entity.js'
import { TreeStreamer, type TreePrefetch } from './tree.js'

export type { GatewayStats } from './gateway.js'
export { POOL_DEFAULTS, type PoolEvent } from './pool-base.js'
export type { EntityPrefetch } from './entity.js'
export { TREE_DEFAULTS, type TreePrefetch } from './tree.js'

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
  /** Blocks of one tree stream held until taken. @default TREE_DEFAULTS.BUFFER_BYTES (8 MiB) */
  treeBufferBytes?: number
  /** A subtree declaring more is not streamed whole while several gateways can share it. @default TREE_DEFAULTS.WINDOW_BYTES (16 MiB) */
  treeWindowBytes?: number
}

const INIT_KEYS = new Set<string>([
  'gateways', 'http', 'concurrency', 'perGatewayConcurrency', 'maxBlockBytes', 'maxAttemptsPerBlock',
  'hedgeAfterMs', 'backoff', 'maxRetryAfterMs', 'now', 'sleep', 'random', 'onEvent', 'health', 'treeBufferBytes', 'treeWindowBytes'
])

/** One fetch of a block, shared by the get() calls that wait for it. */
interface Shared {
  promise: Promise<Uint8Array>
  controller: AbortController
  waiters: number
  settled: boolean
}

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
  readonly #base: PoolBase
  readonly #blocks: BlockFetcher
  readonly #runs: RunScheduler
  readonly #entity: EntityPrefetcher
  readonly #trees: TreeStreamer
  readonly #pending = new Map<string, Shared>()
  readonly #health: HealthRegistry

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
    this.#health = health
    const gateways = urls.map((url) => new Gateway(health.get(url)))
    const perGateway = init.perGatewayConcurrency ?? POOL_DEFAULTS.PER_GATEWAY_CONCURRENCY
    this.#base = new PoolBase({
      gateways,
      http: init.http,
      permits: new Semaphore(init.concurrency ?? POOL_DEFAULTS.CONCURRENCY),
      selector: new ScoredSelector(gateways, perGateway),
      perGateway,
      maxBlockBytes: init.maxBlockBytes ?? MAX_BLOCK_BYTES,
      // providers found by routing add gateways, and attempts with them
      maxAttempts: init.maxAttemptsPerBlock ??
        ((n: number) => Math.max(POOL_DEFAULTS.MIN_ATTEMPTS_PER_BLOCK, POOL_DEFAULTS.ATTEMPTS_PER_GATEWAY * n)),
      hedgeAfterMs: init.hedgeAfterMs,
      maxRetryAfterMs: init.maxRetryAfterMs ?? DEFAULTS.MAX_RETRY_AFTER_MS,
      now: init.now ?? Date.now,
      sleep: init.sleep ?? abortableSleep,
      onEvent: init.onEvent
    })
    this.#blocks = new BlockFetcher(this.#base)
    this.#runs = new RunScheduler(this.#base, this.#blocks)
    this.#entity = new EntityPrefetcher(this.#base, this.#runs)
    this.#trees = new TreeStreamer(this.#base, this.#runs, {
      ...(init.treeBufferBytes === undefined ? {} : { bufferBytes: init.treeBufferBytes }),
      ...(init.treeWindowBytes === undefined ? {} : { windowBytes: init.treeWindowBytes })
    })
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
    if (!this.#trees.idle) {
      const streamed = await this.#trees.take(key, signal)
      if (streamed !== undefined) {
        // a run that was to bring it too: one use of it fewer
        const early = this.#runs.prefetched.get(key)
        if (early !== undefined && --early.uses <= 0) this.#runs.prefetched.delete(key)
        return streamed
      }
    }
    // a block the entity stream was to bring but did not: if a bad block ended it, that is this fetch's first failure
    let missed: CidgetError | undefined
    const stream = this.#entity.current
    if (stream !== undefined) {
      // a leaf a run brings is taken from the run (a copy the stream carried too is let go)
      if (this.#runs.prefetched.has(key) && !stream.wanted.has(key)) stream.blocks.delete(key)
      else {
        const streamed = await this.#entity.fromEntity(stream, key, signal)
        if (streamed !== undefined) return streamed
        if (stream.wanted.has(key)) missed = stream.error
      }
    }
    const early = this.#runs.prefetched.get(key)
    if (early !== undefined) {
      if (--early.uses <= 0 || early.signal.aborted) this.#runs.prefetched.delete(key)
      if (!early.signal.aborted) return await raceAbort(early.promise, signal)
    }
    let shared = this.#pending.get(key)
    if (shared === undefined) {
      const controller = new AbortController()
      const created: Shared = { promise: this.#blocks.fetch(cid, controller.signal, missed), controller, waiters: 0, settled: false }
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
    const sizes = range.sizes
    if (!this.#trees.idle && sizes?.length === leaves.length) {
      // leaves a tree stream brought before it broke off are taken from it: the run asks for the rest
      const held = (i: number): boolean => identityBytes(leaves[i] as CID) === undefined && this.#trees.holds(blockKey(leaves[i] as CID))
      let first = 0
      let last = leaves.length - 1
      while (first <= last && held(first)) first++
      while (last >= first && held(last)) last--
      if (first > last) return true
      if (first > 0 || last < leaves.length - 1) {
        const from = range.from + sizes.slice(0, first).reduce((a, b) => a + b, 0)
        const kept = sizes.slice(first, last + 1)
        range = { ...range, from, to: from + kept.reduce((a, b) => a + b, 0) - 1, sizes: kept }
        leaves = leaves.slice(first, last + 1)
      }
    }
    return this.#runs.prefetchRun(entity, range, leaves, signal)
  }

  /** Whether a tree stream brought `cid` (see TreeStreamer.brought): its subtree is not asked for whole again. */
  brought (cid: CID): boolean {
    return !this.#trees.idle && this.#trees.brought(blockKey(cid))
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
    return this.#entity.prefetchEntity(entity, range, signal)
  }

  /**
   * Streams the whole DAG of `root` (a directory, a HAMT shard: a subtree of
   * the download) as one CAR (`dag-scope=all`) from one gateway; `declared`
   * is what it says it holds (its node and its links' sizes). Each block is
   * verified as it arrives and held (a bounded buffer) until a get() takes
   * it: a get() for a block of the subtree waits for the stream while it
   * goes. Best effort, like the runs: what the stream does not bring is
   * fetched block by block; a gateway that refuses such streams, or sends
   * one that lacks blocks of the DAG, is not asked for one again; one that
   * breaks off or stalls is backed off. The caller releases it when it
   * leaves the subtree. One started `ahead` of the walk (a later sibling) is
   * waited for only once the caller enters it.
   *
   * @returns undefined, and nothing starts, when no gateway may serve it, or
   *   when `declared` is over the tree window and several gateways can share the work
   */
  prefetchTree (root: CID, declared: number, signal: AbortSignal, ahead = false): TreePrefetch | undefined {
    return this.#trees.start(root, declared, signal, ahead)
  }

  /**
   * Adds gateways while the pool works (providers found by routing): each is
   * chosen, scored and dropped like the others. Returns the URLs that were new.
   */
  addGateways (urls: readonly string[]): string[] {
    const added: string[] = []
    for (const raw of urls) {
      const url = raw.replace(/\/+$/, '')
      if (this.#base.gateways.some((g) => g.url === url)) continue
      this.#base.add(new Gateway(this.#health.get(url)))
      added.push(url)
    }
    return added
  }

  /** Gateways may join until `lookup` settles: a block no gateway has waits for it before failing. */
  expectGateways (lookup: Promise<unknown>): void {
    this.#base.expect(lookup.then(() => {}))
  }

  stats (): GatewayStats[] {
    return this.#base.gateways.map((g) => g.stats())
  }
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
  positive('treeBufferBytes')
  positive('treeWindowBytes')
  const nonNegative = (name: 'hedgeAfterMs' | 'maxRetryAfterMs'): void => {
    const v = init[name]
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) bad(`${name} must be a number >= 0, got ${String(v)}`)
  }
  nonNegative('hedgeAfterMs')
  nonNegative('maxRetryAfterMs')
}
