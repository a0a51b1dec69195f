import { DEFAULTS } from './defaults.js'

export interface BackoffOptions {
  initialMs?: number
  multiplier?: number
  maxMs?: number
  /** Share of the delay drawn at random, ±. 0 disables jitter. */
  jitter?: number
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number
}

/**
 * Delay before retry number `attempt` (1-based): initial × multiplier^(attempt-1),
 * capped, with ± jitter. Pure apart from `random`. Never negative, never above maxMs.
 */
export function retryDelay (attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? DEFAULTS.INITIAL_BACKOFF_MS
  const multiplier = opts.multiplier ?? DEFAULTS.BACKOFF_MULTIPLIER
  const max = opts.maxMs ?? DEFAULTS.MAX_BACKOFF_MS
  const jitter = opts.jitter ?? DEFAULTS.BACKOFF_JITTER
  const random = opts.random ?? Math.random
  const n = Math.max(1, Math.floor(attempt))
  const growth = Math.pow(multiplier, n - 1)
  // 0 × ∞ (a zero initial delay after very many attempts) and 1^∞ are NaN in JS: neither grows
  const grown = initial === 0 ? 0 : initial * (Number.isNaN(growth) ? 1 : growth)
  const base = Math.min(max, grown)
  const spread = base * jitter * (2 * random() - 1)
  return Math.max(0, Math.min(max, Math.round(base + spread)))
}

/**
 * Parses Retry-After (delta-seconds or HTTP-date) into milliseconds, capped at `maxMs`.
 * Returns undefined for a missing or unparsable header.
 */
export function parseRetryAfter (value: string | undefined | null, now: number = Date.now(), maxMs: number = DEFAULTS.MAX_RETRY_AFTER_MS): number | undefined {
  if (value === undefined || value === null) return undefined
  const v = value.trim()
  if (v === '') return undefined
  let ms: number
  if (/^\d+$/.test(v)) {
    ms = Number(v) * 1000
  } else {
    // an HTTP-date always names a weekday or month; bare numbers like "-5" are not dates
    if (!/^[A-Za-z]/.test(v)) return undefined
    const t = Date.parse(v)
    if (Number.isNaN(t)) return undefined
    ms = t - now
  }
  if (!Number.isFinite(ms)) return maxMs
  return Math.max(0, Math.min(maxMs, ms))
}
