/**
 * Bandwidth limits (`--limit-rate`): a token bucket that the bytes of
 * response bodies pass through, shared by every request it is given to (all
 * the downloads of a process, or one download's requests: hedges, CAR runs
 * and tree streams included). Reading pauses while the bucket is empty, so
 * the sender is held back by TCP's own flow control.
 *
 * @module
 */
import { CidgetError } from '../core/errors.js'
import { abortableSleep } from '../core/async.js'

/** Bytes per second from curl's syntax: `500K`, `2M`, `1.5G`, `800` (bytes); K = 1024. Undefined for `0`, `none` or `unlimited`. */
export function parseRate (text: string | number, from = '--limit-rate'): number | undefined {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from} must be a rate such as 500K or 2M, got ${text}`)
    return text === 0 ? undefined : Math.floor(text)
  }
  const t = text.trim()
  if (/^(0|none|unlimited)$/i.test(t)) return undefined
  const m = /^(\d+(?:\.\d+)?)\s*([kmgKMG]?)(?:i?B)?(?:\/s)?$/.exec(t)
  if (m === null) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from} must be a rate such as 500K, 2M or 1G (bytes per second), got "${text}"`)
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1
  const rate = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(rate)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from} is too large: "${text}"`)
  if (rate < 1) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from} must be at least 1 byte per second, got "${text}"`)
  return rate
}

export interface RateLimiterInit {
  /** Bytes per second; undefined: no limit. */
  rate?: number | undefined
  /** The time the bucket may fill up to (a burst after a pause). @default 100 ms */
  intervalMs?: number
  /** Clock and sleep, injectable for tests. */
  now?: () => number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

const NEVER = new AbortController().signal
/** The longest single sleep of a taker (it sleeps again for the rest). */
const MAX_NAP_MS = 60_000

/**
 * A rate of `rate` bytes per second with bursts of one interval's bytes (the
 * generic cell rate algorithm: a token bucket told as the time at which the
 * bytes taken so far will have passed). `take(n)` waits until its bytes fit;
 * takers wait in turn, each for the bytes before its own. A new rate applies
 * to what is still owed from then on.
 */
export class RateLimiter {
  #rate: number | undefined
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>
  /** When the bytes taken so far will have passed at the rate. */
  #until: number
  /** Bytes that went through, in all. */
  #passed = 0
  /** Takers waiting: when each may go, and how to wake it when the rate changes. */
  readonly #waiting = new Set<{ until: number, wake: () => void }>()

  constructor (init: RateLimiterInit = {}) {
    this.#rate = init.rate
    this.#intervalMs = init.intervalMs ?? 100
    this.#now = init.now ?? Date.now
    this.#sleep = init.sleep ?? abortableSleep
    this.#until = this.#now()
  }

  /** Bytes per second; undefined: unlimited. */
  get rate (): number | undefined {
    return this.#rate
  }

  /** Bytes that passed through so far. */
  get passed (): number {
    return this.#passed
  }

  /** Changes the rate (undefined: no limit); what is owed, the waiting takers' included, and every byte taken from now on follow it. */
  setRate (rate: number | undefined): void {
    const now = this.#now()
    const rescale = (until: number): number => {
      const owed = this.#rate === undefined ? 0 : Math.max(0, until - now) * this.#rate / 1000
      return rate === undefined ? now : now + owed * 1000 / rate
    }
    this.#until = rescale(this.#until)
    for (const waiter of this.#waiting) {
      waiter.until = rescale(waiter.until)
      waiter.wake()
    }
    this.#rate = rate
  }

  /** Spends `bytes`; resolves once they may pass (at once when unlimited). */
  async take (bytes: number, signal: AbortSignal = NEVER): Promise<void> {
    this.#passed += bytes
    signal.throwIfAborted()
    const rate = this.#rate
    if (rate === undefined) return
    const now = this.#now()
    this.#until = Math.max(this.#until, now - this.#intervalMs) + bytes * 1000 / rate
    if (this.#until <= now) return
    const waiter = { until: this.#until, wake: () => {} }
    this.#waiting.add(waiter)
    try {
      // woken early by a new rate, it waits for the time its bytes then need
      for (let ms = waiter.until - now; ms > 0; ms = waiter.until - this.#now()) {
        const nap = new AbortController()
        waiter.wake = () => { nap.abort() }
        const onAbort = (): void => { nap.abort() }
        signal.addEventListener('abort', onAbort, { once: true })
        try {
          // in naps of at most a minute: a timer cannot wait longer than 2^31 ms, and a rate may change meanwhile
          await this.#sleep(Math.min(MAX_NAP_MS, Math.ceil(ms)), nap.signal)
        } catch (err) {
          if (signal.aborted) throw signal.reason
          if (!nap.signal.aborted) throw err
        } finally {
          signal.removeEventListener('abort', onAbort)
        }
      }
    } finally {
      this.#waiting.delete(waiter)
    }
  }
}
