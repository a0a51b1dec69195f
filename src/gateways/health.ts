/**
 * Gateway health shared by every download of a process, as aria2's
 * ServerStatMan keeps it: a gateway that times out, resets or answers 5xx or
 * 429 backs off (exponential, with jitter, on its consecutive errors, or the
 * Retry-After it sent), and every download that asks for it meanwhile learns
 * so from its one record here instead of finding out again.
 *
 * @module
 */

import type { CidgetError } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import { setAside, type BackOffPolicy, type BackoffOptions } from '../core/retry.js'

/** Every default of {@link HealthRegistry} in one block. */
export const HEALTH_DEFAULTS = {
  /** Gateways remembered besides the configured ones: clients and routers can name any number. */
  MAX_GATEWAYS: 256
} as const

export interface HealthRegistryInit {
  /** The configured gateways: never forgotten. Trailing slashes are removed. */
  keep?: readonly string[]
  /** Other gateways remembered; the least recently used beyond this are forgotten. @default 256 */
  maxGateways?: number
  /** Backoff of a failing gateway, on its consecutive errors. @default the DEFAULTS backoff (1 s, ×2, ≤ 30 s, ±20 %) */
  backoff?: BackoffOptions
  /** Longest wait a Retry-After imposes on a gateway. @default DEFAULTS.MAX_RETRY_AFTER_MS (60 s) */
  maxRetryAfterMs?: number
  /** Clock of the back-off deadlines. @default Date.now */
  now?: () => number
}

/** How a failure set a gateway aside: for how long, and whether the gateway said so (Retry-After). */
export interface BackOff {
  waitMs: number
  told: boolean
  /** Errors since the gateway last served: the backoff exponent. */
  consecutiveErrors: number
}

/** One gateway's back-off, read and written by every download that uses it. */
export class GatewayHealth {
  readonly url: string
  /** Errors since the last success: the backoff exponent. */
  consecutiveErrors = 0
  /** `now()` until which the gateway is not asked (Retry-After or backoff); 0 when never blocked. */
  blockedUntil = 0
  /** The failure that set it aside last: what a download that finds it aside is told. */
  lastError: CidgetError | undefined
  readonly #registry: HealthRegistry

  constructor (url: string, registry: HealthRegistry) {
    this.url = url
    this.#registry = registry
  }

  /** How long it is set aside after a failure of its own (the registry's, shared by every download). */
  get policy (): BackOffPolicy {
    return this.#registry.policy
  }

  /** Not to be asked now: backing off or told to wait. */
  blocked (now: number = this.#registry.now()): boolean {
    return this.blockedUntil > now
  }

  /** Keeps the gateway aside until `until` (a `now()` time), unless it already is for longer. */
  blockUntil (until: number, error?: CidgetError): void {
    if (until > this.blockedUntil) this.blockedUntil = until
    if (error !== undefined) this.lastError = error
  }

  /** A failure that is the gateway's (timeout, reset, 5xx, 429): it backs off, for as long as it said or by its error streak (see `setAside`). */
  backOff (error: CidgetError): BackOff {
    const { ms, told } = setAside(error, this.consecutiveErrors + 1, this.#registry.policy)
    return { waitMs: ms, told, consecutiveErrors: this.setAside(ms, error) }
  }

  /** One more error in a row, and aside for `waitMs` as the retry policy decided: returns the errors in a row. */
  setAside (waitMs: number, error?: CidgetError): number {
    this.consecutiveErrors++
    this.blockUntil(this.#registry.now() + waitMs, error)
    return this.consecutiveErrors
  }

  /** It served again: true when that ends an error streak. */
  served (): boolean {
    if (this.consecutiveErrors === 0) return false
    this.consecutiveErrors = 0
    return true
  }
}

/**
 * The health of every gateway a process uses, one record per URL. Bounded:
 * the configured gateways are kept, others are forgotten least recently used
 * first (a download that still holds one keeps using its record).
 */
export class HealthRegistry {
  /** How long a failing gateway is set aside: its backoff and the cap on a Retry-After. */
  readonly policy: BackOffPolicy
  readonly now: () => number
  readonly #keep: Set<string>
  readonly #max: number
  /** Most recently used last (a Map keeps insertion order). */
  readonly #gateways = new Map<string, GatewayHealth>()
  #others = 0

  constructor (init: HealthRegistryInit = {}) {
    const backoff = init.backoff ?? {}
    this.policy = {
      initialBackoffMs: backoff.initialMs ?? DEFAULTS.INITIAL_BACKOFF_MS,
      backoffMultiplier: backoff.multiplier ?? DEFAULTS.BACKOFF_MULTIPLIER,
      maxBackoffMs: backoff.maxMs ?? DEFAULTS.MAX_BACKOFF_MS,
      backoffJitter: backoff.jitter ?? DEFAULTS.BACKOFF_JITTER,
      maxRetryAfterMs: init.maxRetryAfterMs ?? DEFAULTS.MAX_RETRY_AFTER_MS,
      ...(backoff.random === undefined ? {} : { random: backoff.random })
    }
    this.now = init.now ?? Date.now
    this.#keep = new Set((init.keep ?? []).map(trim))
    this.#max = init.maxGateways ?? HEALTH_DEFAULTS.MAX_GATEWAYS
  }

  /** The record of `url` (made on first use), now the most recently used. */
  get (url: string): GatewayHealth {
    const key = trim(url)
    let health = this.#gateways.get(key)
    if (health !== undefined) {
      this.#gateways.delete(key)
    } else {
      health = new GatewayHealth(key, this)
      if (!this.#keep.has(key)) this.#others++
    }
    this.#gateways.set(key, health)
    this.#bound()
    return health
  }

  /** The record of `url` if there is one, without making it the most recently used. */
  peek (url: string): GatewayHealth | undefined {
    return this.#gateways.get(trim(url))
  }

  get size (): number {
    return this.#gateways.size
  }

  #bound (): void {
    if (this.#others <= this.#max) return
    for (const key of this.#gateways.keys()) {
      if (this.#others <= this.#max) return
      if (this.#keep.has(key)) continue
      this.#gateways.delete(key)
      this.#others--
    }
  }
}

function trim (url: string): string {
  return url.replace(/\/+$/, '')
}
