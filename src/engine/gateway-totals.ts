/**
 * Gateway totals over every download of a Downloader: the pools of running
 * downloads, plus what the pools of finished runs counted, bounded so that
 * clients naming ever new gateways cannot grow memory or /metrics.
 *
 * @module
 */

import type { GatewayPool, GatewayStats } from '../gateways/pool.js'

/**
 * Gateways besides the configured ones whose totals `gatewayStats()` (and so
 * `/api/gateways` and `/metrics`) reports one by one; the rest are summed up
 * in one entry whose url is {@link OTHER_GATEWAYS}.
 */
export const MAX_TRACKED_GATEWAYS = 64
/** The `url` of the entry that sums up the gateways beyond MAX_TRACKED_GATEWAYS. */
export const OTHER_GATEWAYS = 'other'

/**
 * One gateway's health as `gatewayStats()` reports it: the pool's stats without
 * the per-download ranking fields.
 */
export type GatewayTotals = Omit<GatewayStats, 'notFound' | 'reliability'>

export class GatewayTotalsBook {
  /** The operator's gateways: always reported, never summed up into "other". */
  readonly #gateways: readonly string[]
  /** Pools of the downloads running now. */
  readonly #pools = new Set<GatewayPool>()
  /** Totals of the pools of finished runs, per gateway. */
  readonly #past = new Map<string, GatewayTotals>()
  /** Totals of the gateways left out of #past (least recently used beyond MAX_TRACKED_GATEWAYS). */
  readonly #other: GatewayTotals = emptyTotals(OTHER_GATEWAYS)

  constructor (gateways: readonly string[]) {
    this.#gateways = gateways
  }

  /** Runs `fn` with `pool` counted in stats(); its totals are kept when it is done. */
  async track<T> (pool: GatewayPool, fn: () => Promise<T>): Promise<T> {
    this.#pools.add(pool)
    try {
      return await fn()
    } finally {
      this.#pools.delete(pool)
      for (const s of pool.stats()) {
        const past = this.#past.get(s.url) ?? emptyTotals(s.url)
        addCounts(past, totalsOf(s))
        // most recently used last (a Map keeps insertion order): the first one is the least recently used
        this.#past.delete(s.url)
        this.#past.set(s.url, past)
      }
      this.#bound()
    }
  }

  /**
   * Health of every gateway known (the operator's and those of running
   * downloads): request, error and byte totals over all downloads so far, and
   * the latency, throughput and state seen by the downloads running now.
   */
  stats (): GatewayTotals[] {
    const ops = new Set(this.#gateways)
    const out = new Map<string, GatewayTotals>()
    const add = (t: GatewayTotals): void => {
      const o = out.get(t.url)
      if (o === undefined) { out.set(t.url, { ...t }); return }
      addCounts(o, t)
      o.inFlight += t.inFlight
      o.dropped ||= t.dropped
      o.blockedUntil = Math.max(o.blockedUntil, t.blockedUntil)
    }
    // the operator's gateways, then the others most recent first: running downloads' ones, then finished ones newest first
    for (const url of this.#gateways) add(emptyTotals(url))
    for (const pool of this.#pools) for (const s of pool.stats()) add(totalsOf(s))
    for (const t of [...this.#past.values()].reverse()) add({ ...t, inFlight: 0, dropped: false, blockedUntil: 0 })
    // gateways clients named are many and unbounded: beyond MAX_TRACKED_GATEWAYS they are one "other" entry
    const result: GatewayTotals[] = []
    let others = 0
    const other = { ...this.#other, inFlight: 0, dropped: false, blockedUntil: 0 }
    for (const t of out.values()) {
      if (ops.has(t.url) || others++ < MAX_TRACKED_GATEWAYS) {
        result.push(t)
      } else {
        addCounts(other, t)
        other.inFlight += t.inFlight
      }
    }
    if (other.requests > 0 || other.inFlight > 0 || others > MAX_TRACKED_GATEWAYS) result.push(other)
    return result
  }

  /**
   * Keeps the totals of at most MAX_TRACKED_GATEWAYS gateways besides the
   * operator's: the least recently used ones are added into one "other" entry.
   */
  #bound (): void {
    const ops = new Set(this.#gateways)
    let extra = 0
    for (const url of this.#past.keys()) if (!ops.has(url)) extra++
    for (const [url, t] of this.#past) {
      if (extra <= MAX_TRACKED_GATEWAYS) break
      if (ops.has(url)) continue
      addCounts(this.#other, t)
      this.#past.delete(url)
      extra--
    }
  }
}

function emptyTotals (url: string): GatewayTotals {
  return { url, requests: 0, successes: 0, errors: 0, invalidBlocks: 0, bytes: 0, inFlight: 0, latencyMs: 0, throughputBps: 0, dropped: false, blockedUntil: 0 }
}

function totalsOf ({ notFound: _n, reliability: _r, ...totals }: GatewayStats): GatewayTotals {
  return totals
}

/** Adds `from`'s counts to `into`; latency and throughput take the newest measurement. */
function addCounts (into: GatewayTotals, from: GatewayTotals): void {
  into.requests += from.requests
  into.successes += from.successes
  into.errors += from.errors
  into.invalidBlocks += from.invalidBlocks
  into.bytes += from.bytes
  if (from.latencyMs > 0) into.latencyMs = from.latencyMs
  if (from.throughputBps > 0) into.throughputBps = from.throughputBps
}
