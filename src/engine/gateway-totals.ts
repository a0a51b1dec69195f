/**
 * Gateway totals over every download of a Downloader: the pools of running
 * downloads, plus what the pools of finished runs counted, bounded so that
 * clients naming ever new gateways cannot grow memory or /metrics; and each
 * gateway's current throughput, all downloads together.
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

/** How far back a gateway's current throughput looks: the bytes of about the last 5 s. */
export const THROUGHPUT_WINDOW_MS = 5_000
/** While downloads run, the totals are sampled this often, so the window is filled whoever asks for stats, and when. */
export const THROUGHPUT_SAMPLE_MS = 1_000
/** A throughput is never bytes over less than this: the first blocks of a download are not a spike. */
const MIN_SPAN_MS = 1_000
/** Samples closer together than this are one (a client polling in a loop cannot grow the window's list). */
const MIN_SAMPLE_GAP_MS = 100

/**
 * One gateway's health as `gatewayStats()` reports it: the pool's stats without
 * the per-download ranking fields, and its current throughput.
 */
export type GatewayTotals = Omit<GatewayStats, 'notFound' | 'reliability' | 'throughputBps'> & {
  /**
   * Bytes per second of verified blocks received from the gateway by all
   * downloads together over about the last {@link THROUGHPUT_WINDOW_MS}: what
   * it sends now, 0 when idle. (A pool's own `throughputBps` is an EWMA per
   * request, which ranks gateways; with n requests in flight that share the
   * gateway's bandwidth it is about 1/n of this.)
   */
  throughputBps: number
}

/** Options of a GatewayTotalsBook. */
export interface GatewayTotalsInit {
  /**
   * The clock of the throughput samples, in ms.
   * @default performance.now (bytes arrive in real time, whatever clock the engine's timers use)
   */
  now?: () => number
  /**
   * Sample every this many ms while downloads run; 0: only when stats() is called.
   * @default THROUGHPUT_SAMPLE_MS
   */
  sampleMs?: number
}

export class GatewayTotalsBook {
  /** The operator's gateways: always reported, never summed up into "other". */
  readonly #gateways: readonly string[]
  /** Pools of the downloads running now. */
  readonly #pools = new Set<GatewayPool>()
  /** Totals of the pools of finished runs, per gateway. */
  readonly #past = new Map<string, GatewayTotals>()
  /** Totals of the gateways left out of #past (least recently used beyond MAX_TRACKED_GATEWAYS). */
  readonly #other: GatewayTotals = emptyTotals(OTHER_GATEWAYS)
  /** Recent byte totals per gateway, for the current throughput. */
  readonly #recent = new Map<string, RecentBytes>()
  readonly #now: () => number
  readonly #sampleMs: number
  #timer: ReturnType<typeof setInterval> | undefined

  constructor (gateways: readonly string[], init: GatewayTotalsInit = {}) {
    this.#gateways = gateways
    this.#now = init.now ?? (() => performance.now())
    this.#sampleMs = init.sampleMs ?? THROUGHPUT_SAMPLE_MS
  }

  /** Runs `fn` with `pool` counted in stats(); its totals are kept when it is done. */
  async track<T> (pool: GatewayPool, fn: () => Promise<T>): Promise<T> {
    this.#pools.add(pool)
    this.#sample()
    if (this.#timer === undefined && this.#sampleMs > 0) {
      this.#timer = setInterval(() => { this.#sample() }, this.#sampleMs)
      // the samples serve stats(): they never keep the process alive
      this.#timer.unref()
    }
    try {
      return await fn()
    } finally {
      this.#pools.delete(pool)
      if (this.#pools.size === 0) {
        clearInterval(this.#timer)
        this.#timer = undefined
      }
      for (const s of pool.stats()) {
        const past = this.#past.get(s.url) ?? emptyTotals(s.url)
        addCounts(past, totalsOf(s))
        // most recently used last (a Map keeps insertion order): the first one is the least recently used
        this.#past.delete(s.url)
        this.#past.set(s.url, past)
      }
      this.#bound()
      this.#sample()
    }
  }

  /**
   * Health of every gateway known (the operator's and those of running
   * downloads): request, error and byte totals over all downloads so far,
   * the latency and state seen by the downloads running now, and the
   * throughput of all downloads together over the last seconds.
   */
  stats (): GatewayTotals[] {
    const ops = new Set(this.#gateways)
    const out = this.#sample()
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
        other.throughputBps += t.throughputBps
      }
    }
    if (other.requests > 0 || other.inFlight > 0 || others > MAX_TRACKED_GATEWAYS) result.push(other)
    return result
  }

  /** Every gateway's totals now, each with its current throughput (the byte totals are sampled for it). */
  #sample (): Map<string, GatewayTotals> {
    const out = this.#collect()
    const now = this.#now()
    for (const [url, t] of out) {
      let recent = this.#recent.get(url)
      if (recent === undefined) this.#recent.set(url, recent = new RecentBytes())
      t.throughputBps = recent.add(now, t.bytes)
    }
    for (const url of this.#recent.keys()) if (!out.has(url)) this.#recent.delete(url)
    return out
  }

  /** The totals of every gateway known, by url, in the order stats() lists them. */
  #collect (): Map<string, GatewayTotals> {
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
    return out
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

/** A pool's stats as totals: the throughput is not the pool's per-request EWMA but the book's own (see #sample). */
function totalsOf ({ notFound: _n, reliability: _r, throughputBps: _t, ...totals }: GatewayStats): GatewayTotals {
  return { ...totals, throughputBps: 0 }
}

/** Adds `from`'s counts to `into`; latency takes the newest measurement. */
function addCounts (into: GatewayTotals, from: GatewayTotals): void {
  into.requests += from.requests
  into.successes += from.successes
  into.errors += from.errors
  into.invalidBlocks += from.invalidBlocks
  into.bytes += from.bytes
  if (from.latencyMs > 0) into.latencyMs = from.latencyMs
}

/**
 * One gateway's byte total over the last seconds: samples of (time, total)
 * whose oldest, the base, is the newest one at or before the window's start,
 * moved past any stretch in which nothing arrived (a gateway that starts
 * sending shows its rate at once, not averaged with the idle seconds before).
 */
class RecentBytes {
  readonly #samples: Array<{ t: number, bytes: number }> = []

  /** Takes the total `bytes` at `t` and returns the bytes per second since the base. */
  add (t: number, bytes: number): number {
    const s = this.#samples
    // a total that went down was summed up into "other": its history says nothing of the rest
    if (bytes < (s[s.length - 1]?.bytes ?? 0)) s.length = 0
    const newest = s[s.length - 1]
    const before = s[s.length - 2]
    if (newest !== undefined && before !== undefined && t - before.t < MIN_SAMPLE_GAP_MS) {
      newest.t = t
      newest.bytes = bytes
    } else {
      s.push({ t, bytes })
    }
    for (let next = s[1]; next !== undefined && (next.t <= t - THROUGHPUT_WINDOW_MS || next.bytes === s[0]?.bytes); next = s[1]) s.shift()
    const base = s[0]
    if (base === undefined || s.length < 2) return 0
    return Math.round((bytes - base.bytes) * 1000 / Math.max(t - base.t, MIN_SPAN_MS))
  }
}
