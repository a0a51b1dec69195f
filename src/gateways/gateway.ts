/**
 * One gateway as one download's pool sees it, scored the way helia's
 * trustless-gateway client scores it: its own counters and
 * `reliability()`, its throughput and latency, and its back-off, which lives
 * in the process-wide {@link GatewayHealth} so that every download shares it.
 *
 * @module
 */

import type { CidgetError } from '../core/errors.js'
import type { RetryDecision } from '../core/retry.js'
import type { GatewayHealth } from './health.js'

/** Weight of the newest sample in the latency and throughput EWMAs. */
export const EWMA_ALPHA = 0.3
/** Blocks smaller than this do not count towards a gateway's throughput. */
export const MIN_THROUGHPUT_SAMPLE_BYTES = 64 * 1024

export interface GatewayStats {
  url: string
  /** Requests sent (attempts), including those aborted because another gateway won; a CAR run counts once per block it delivers. */
  requests: number
  successes: number
  /** Failed requests of any kind (404s and invalid blocks included), not counting aborted ones. */
  errors: number
  /** 404/410 answers (also counted in `errors`). */
  notFound: number
  invalidBlocks: number
  /** Bytes of verified blocks received. */
  bytes: number
  inFlight: number
  /** EWMA of block bytes per second over whole blocks of 64 KiB or more; 0 until the first. */
  throughputBps: number
  /** EWMA of the time from request to the whole block, in ms; 0 until the first block. */
  latencyMs: number
  /** successes / (answered requests + errors × 3), at most 1; 1 for a gateway with no answer yet, 0 once dropped. */
  reliability: number
  /** True for the rest of this pool's life after an invalid (or oversized) block. */
  dropped: boolean
  /** `now()` until which the gateway is not asked (Retry-After or backoff); 0 when never blocked. */
  blockedUntil: number
}

/** What a failure did to a gateway, for the pool to announce. */
export type Verdict =
  | { state: 'dropped', reason: string }
  | { state: 'blocked', reason: string }
  | undefined

export class Gateway {
  readonly url: string
  /** The process-wide back-off of this gateway. */
  readonly health: GatewayHealth
  requests = 0
  successes = 0
  errors = 0
  notFound = 0
  invalidBlocks = 0
  bytes = 0
  inFlight = 0
  throughputBps: number | undefined = undefined
  latencyMs: number | undefined = undefined
  /** Sent an invalid (or oversized) block: not asked again by this pool. */
  dropped = false
  /** Serves CAR entity ranges: learned from its first run (undefined until then). */
  car: boolean | undefined = undefined
  /**
   * Serves whole DAGs as CAR (`dag-scope=all`): learned from its first tree
   * stream (undefined until then); false once it refused one, or sent one
   * that lacked blocks of the DAG.
   */
  tree: boolean | undefined = undefined
  /** Tree streams it was given (ties between gateways alike go to the one given fewest). */
  streams = 0
  /** CAR runs in flight (also counted in `inFlight`). */
  runs = 0
  /** Its last CAR request failed (404, an error): it is not given the rest of another's run. */
  runFailed = false

  constructor (health: GatewayHealth) {
    this.url = health.url
    this.health = health
  }

  get blockedUntil (): number {
    return this.health.blockedUntil
  }

  /** successes / (answered requests + errors × 3), at most 1: 1 before any answer, 0 once dropped. */
  reliability (): number {
    if (this.dropped) return 0
    // requests still in flight have not failed: counting them would rank a gateway down for being busy
    const answered = this.requests - this.inFlight
    if (answered <= 0) return 1
    return Math.min(1, this.successes / (answered + this.errors * 3))
  }

  /** A verified block of `bytes` arrived: true when that ends an error streak (the gateway is healthy again). */
  delivered (bytes: number): boolean {
    this.successes++
    this.bytes += bytes
    return this.health.served()
  }

  /**
   * Feeds one transfer into the EWMAs: `bytes` in `ms` from the request (a
   * block's time is also a latency sample; a run's is not, its blocks stream
   * back to back). Returns the elapsed time it counted.
   */
  measure (bytes: number, ms: number, latency: boolean): number {
    const elapsed = Math.max(ms, 0.5)
    if (latency) this.latencyMs = ewma(this.latencyMs, elapsed, EWMA_ALPHA)
    // a small block measures the round trip, not the bandwidth: it would rank a fast gateway as slow
    if (bytes >= MIN_THROUGHPUT_SAMPLE_BYTES) this.throughputBps = ewma(this.throughputBps, bytes * 1000 / elapsed, EWMA_ALPHA)
    return elapsed
  }

  /** A 404/410: the gateway lacks this content; it may well have the rest. */
  missing (): void {
    this.errors++
    this.notFound++
  }

  /**
   * Carries out what the retry policy decided `error` does to this gateway
   * (see decideRetry, block scope): `drop` (an invalid or oversized block)
   * drops it from this pool, a set-aside (timeout, reset, 5xx, 429) backs it
   * off for every download. `skip` (a 404) is the caller's: see `missing`.
   */
  penalize (decision: Pick<RetryDecision, 'gateway' | 'blockMs' | 'told'>, error: CidgetError): Verdict {
    if (decision.gateway === 'drop') {
      this.errors++
      this.invalidBlocks++
      if (this.dropped) return undefined
      this.dropped = true
      return { state: 'dropped', reason: error.message }
    }
    if (decision.blockMs === undefined) return undefined
    this.errors++
    const streak = this.health.setAside(decision.blockMs, error)
    return {
      state: 'blocked',
      reason: `${decision.told ? 'Retry-After' : `backoff after ${streak} consecutive error(s)`}: ${decision.blockMs} ms (${error.message})`
    }
  }

  stats (): GatewayStats {
    return {
      url: this.url,
      requests: this.requests,
      successes: this.successes,
      errors: this.errors,
      notFound: this.notFound,
      invalidBlocks: this.invalidBlocks,
      bytes: this.bytes,
      inFlight: this.inFlight,
      throughputBps: this.throughputBps ?? 0,
      latencyMs: this.latencyMs ?? 0,
      reliability: this.reliability(),
      dropped: this.dropped,
      blockedUntil: this.blockedUntil
    }
  }
}

export function ewma (previous: number | undefined, sample: number, alpha: number): number {
  return previous === undefined ? sample : previous + alpha * (sample - previous)
}
