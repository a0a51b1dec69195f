/**
 * What every part of a gateway pool shares (as undici's pool-base is to its
 * pools): the gateways and their chooser, the permits that bound the
 * requests in flight, the clock, the pool's block latency that hedging waits
 * on, the wake-ups of waiters when something changes, and the events.
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { CidgetError } from '../core/errors.js'
import { abortableSleep, type Semaphore, type Sleep } from '../core/async.js'
import { decideRetry, type RetryDecision } from '../core/retry.js'
import type { HttpClient } from './http.js'
import { EWMA_ALPHA, MIN_THROUGHPUT_SAMPLE_BYTES, ewma, type Gateway } from './gateway.js'
import type { ScoredSelector } from './selector.js'

/** The abort reason of a wake-up (something changed: a permit, a gateway); not an error. */
export const WOKEN: unique symbol = Symbol('woken')
/** The signal of a wait that nothing but its own end stops. */
export const NEVER: AbortSignal = new AbortController().signal
/** The abort reason of a stream stopped because what it still carries went elsewhere or is not wanted; not an error. */
export const HANDED_ON: unique symbol = Symbol('handed on')

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
  | { type: 'retry', cid: string, gateway: string, code: string, message: string, systemCode: string | null, delayMs: number }
  | { type: 'hedge', cid: string, from: string, to: string }
  | { type: 'gateway', gateway: string, state: 'dropped' | 'blocked' | 'healthy', reason: string }

/**
 * A block's event. Its CID is made a string only when read: a tree of small
 * files delivers tens of thousands of blocks a second, and most listeners
 * only count them.
 */
class BlockEvent {
  readonly type = 'block'
  readonly #id: string | CID
  constructor (id: string | CID, readonly gateway: string, readonly bytes: number, readonly ms: number) {
    this.#id = id
  }

  get cid (): string {
    return this.#id.toString()
  }

  toJSON (): PoolEvent {
    return { type: this.type, cid: this.cid, gateway: this.gateway, bytes: this.bytes, ms: this.ms }
  }
}

/** The pool's settings, defaults applied. */
export interface PoolSettings {
  gateways: Gateway[]
  http: HttpClient
  permits: Semaphore
  selector: ScoredSelector
  perGateway: number
  maxBlockBytes: number
  /** Attempts per block: a number, or one per gateway count (gateways join while the pool works). */
  maxAttempts: number | ((gateways: number) => number)
  hedgeAfterMs: number | undefined
  maxRetryAfterMs: number
  now: () => number
  sleep: Sleep
  onEvent: ((e: PoolEvent) => void) | undefined
}

export class PoolBase {
  readonly gateways: Gateway[]
  readonly http: HttpClient
  /** Bounds the requests in flight over all gateways (and so the memory: concurrency × maxBlockBytes). */
  readonly permits: Semaphore
  readonly selector: ScoredSelector
  readonly perGateway: number
  readonly maxBlockBytes: number
  readonly #maxAttempts: number | ((gateways: number) => number)
  readonly hedgeAfterMs: number | undefined
  readonly maxRetryAfterMs: number
  readonly now: () => number
  readonly sleep: Sleep
  readonly #onEvent: ((e: PoolEvent) => void) | undefined
  /** Called when a request ends: capacity, blocks and drops may have changed. */
  readonly #wakers = new Set<() => void>()
  /** EWMA of the time from request to whole block over all gateways: hedging waits on it. */
  #latencyMs: number | undefined
  /** Sources may still join (providers being looked up): a block no gateway has waits for them before it fails. */
  #expecting: Promise<void> | undefined

  constructor (settings: PoolSettings) {
    this.gateways = settings.gateways
    this.http = settings.http
    this.permits = settings.permits
    this.selector = settings.selector
    this.perGateway = settings.perGateway
    this.maxBlockBytes = settings.maxBlockBytes
    this.#maxAttempts = settings.maxAttempts
    this.hedgeAfterMs = settings.hedgeAfterMs
    this.maxRetryAfterMs = settings.maxRetryAfterMs
    this.now = settings.now
    this.sleep = settings.sleep
    this.#onEvent = settings.onEvent
  }

  /** Attempts a block may take, for the gateways there are now. */
  get maxAttempts (): number {
    return typeof this.#maxAttempts === 'number' ? this.#maxAttempts : this.#maxAttempts(this.gateways.length)
  }

  /**
   * Counts a verified block (`id`: its CID, or the CID as a string) that
   * `gateway` delivered `ms` after the request; a block of a run is not
   * measured alone (`measure` false: the run is one sample).
   */
  delivered (gateway: Gateway, id: string | CID, bytes: number, ms: number, measure = true): void {
    if (gateway.delivered(bytes) && !gateway.dropped) this.emit({ type: 'gateway', gateway: gateway.url, state: 'healthy', reason: 'served a valid block again' })
    if (measure) this.measure(gateway, bytes, ms, true)
    if (this.#onEvent !== undefined) this.emit(new BlockEvent(id, gateway.url, bytes, Math.round(ms)))
  }

  /** Feeds one transfer into the gateway's EWMAs (see Gateway.measure) and a block's time into the pool's latency. */
  measure (gateway: Gateway, bytes: number, ms: number, latency: boolean): void {
    const elapsed = gateway.measure(bytes, ms, latency)
    if (latency) this.#latencyMs = ewma(this.#latencyMs, elapsed, EWMA_ALPHA)
  }

  /**
   * The retry policy's answer to `error` from `gateway` while fetching `item`
   * after `attempts` failed attempts of it (see decideRetry, block scope).
   * Pure: nothing is counted.
   */
  decide (gateway: Gateway, error: CidgetError, item: string, attempts: number): RetryDecision {
    // the streak with this failure, were it to set the gateway aside
    const state = { scope: 'block' as const, item, attempts, gateway: { streak: gateway.health.consecutiveErrors + 1 } }
    return decideRetry({ error, phase: 'transfer', received: 0 }, state, { ...gateway.health.policy, maxAttemptsPerBlock: this.maxAttempts })
  }

  /**
   * Scores a failed request against its gateway as the retry policy decides:
   * an invalid block drops it from this pool, another failure of its own backs
   * it off for every pool (see Gateway.penalize). A `skip` (404) is left to the
   * caller, which knows what the gateway lacks. Returns the decision.
   */
  penalize (gateway: Gateway, error: CidgetError, item: string): RetryDecision {
    const decision = this.decide(gateway, error, item, 0)
    const verdict = gateway.penalize(decision, error)
    if (verdict !== undefined) this.emit({ type: 'gateway', gateway: gateway.url, ...verdict })
    return decision
  }

  /** How long a lone request waits before a second gateway is asked too; undefined with hedging off. */
  hedgeDelay (): number | undefined {
    if (this.hedgeAfterMs !== undefined) return this.hedgeAfterMs === 0 ? undefined : this.hedgeAfterMs
    if (this.#latencyMs === undefined) return POOL_DEFAULTS.HEDGE_INITIAL_MS
    return Math.max(POOL_DEFAULTS.HEDGE_MIN_MS, POOL_DEFAULTS.HEDGE_LATENCY_FACTOR * this.#latencyMs)
  }

  /**
   * Waits until `until` (a `now()` time) or until something changes (a request ends, the entity
   * stream brings a block or ends), whichever is first: true when woken by a change. `wakers`:
   * a set of the caller's instead, whose owner wakes its waiters by calling them (a tree stream
   * wakes the get() waiting for one block, not every waiter of the pool).
   */
  async waitForChange (until: number | undefined, signal: AbortSignal, wakers: Set<() => void> = this.#wakers): Promise<boolean> {
    signal.throwIfAborted()
    // a promise and plain callbacks, not an AbortController per wait: a tree of small files waits once per block
    let woken = false
    let done!: () => void
    const settled = new Promise<void>(resolve => { done = resolve })
    const waker = (): void => {
      woken = true
      done()
    }
    signal.addEventListener('abort', done, { once: true })
    wakers.add(waker)
    let timer: ReturnType<typeof setTimeout> | undefined
    let stopSleep: AbortController | undefined
    try {
      if (until !== undefined) {
        const ms = Math.max(0, until - this.now())
        // the process's own clock: a timer; an injected one (tests) is asked through its sleep
        if (this.sleep === abortableSleep) timer = setTimeout(done, ms)
        else {
          stopSleep = new AbortController()
          this.sleep(ms, stopSleep.signal).then(done, () => {})
        }
      }
      await settled
    } finally {
      clearTimeout(timer)
      stopSleep?.abort(WOKEN)
      signal.removeEventListener('abort', done)
      wakers.delete(waker)
    }
    signal.throwIfAborted()
    return woken
  }

  /**
   * More gateways may join until `until` settles (a lookup of providers):
   * a block that no gateway has (each answered 404 or was dropped) waits for
   * them, or for the end of the lookup, before it fails.
   */
  expect (until: Promise<void>): void {
    const settled = until.catch(() => {}).then(() => {
      if (this.#expecting === settled) this.#expecting = undefined
      this.wake()
    })
    this.#expecting = settled
  }

  /** Whether gateways may still join (see {@link expect}). */
  get expecting (): boolean {
    return this.#expecting !== undefined
  }

  /** Waits until a gateway joins or none can any more (or the signal fires). */
  async awaitMore (signal: AbortSignal): Promise<void> {
    if (this.#expecting === undefined) return
    await this.waitForChange(undefined, signal)
  }

  /** Adds `gateway` (the selector shares the list); waiting fetches look again. */
  add (gateway: Gateway): void {
    this.gateways.push(gateway)
    this.wake()
  }

  wake (): void {
    const wakers = [...this.#wakers]
    this.#wakers.clear()
    for (const waker of wakers) waker()
  }

  emit (event: PoolEvent): void {
    try {
      this.#onEvent?.(event)
    } catch {
      // A listener's failure must not break a fetch.
    }
  }
}

export function asError (err: unknown, gateway: string): CidgetError {
  if (err instanceof CidgetError) return err
  const detail = err instanceof Error ? err.message : String(err)
  return new CidgetError('CIDGET_ERR_NETWORK', `${gateway}: ${detail}`, { cause: err, gateway })
}

