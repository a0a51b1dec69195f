/**
 * Pacing: the token bucket behind the gateway-wide cap and the `throttle`
 * fault, and the abortable sleep it waits with.
 *
 * @module
 */

import { abortableSleep } from '../../core/async.js'
import { CidgetError } from '../../core/errors.js'

/** `rate` when it is a usable bandwidth (or `undefined`: no cap); otherwise a CIDGET_ERR_BAD_OPTION naming `name`. */
export function checkRate (rate: number | undefined, name: string): number | undefined {
  if (rate !== undefined && !(rate > 0 && Number.isFinite(rate))) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${name} must be a positive number, got ${rate}`)
  }
  return rate
}

const BURST_MS = 100

/**
 * Paces writes so that the bytes sent by time t never exceed rate × t: each
 * write waits until the moment its last byte is "due". Shared by every
 * response of a gateway, so connections split the rate between them.
 */
export class RateLimiter {
  #rate: number | undefined
  #next = 0

  constructor (rate: number | undefined) {
    this.setRate(rate)
  }

  get rate (): number | undefined { return this.#rate }

  setRate (rate: number | undefined): void {
    this.#rate = rate
    this.#next = performance.now()
  }

  async acquire (bytes: number, signal: AbortSignal): Promise<void> {
    const rate = this.#rate
    if (rate === undefined) return
    const now = performance.now()
    // A token bucket holding up to BURST_MS of the rate: time lost to late timers is made up,
    // so the gateway delivers its cap rather than ~3/4 of it, and idle time is not hoarded.
    this.#next = Math.max(now - BURST_MS, this.#next) + (bytes * 1000) / rate
    const wait = this.#next - now
    if (wait >= 1) await sleep(wait, signal)
  }
}

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects: an aborted request just ends). */
export async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await abortableSleep(ms, signal).catch(() => {})
}
