/**
 * Properties of the retry delay: for every policy the Downloader accepts
 * (finite numbers ≥ 0) and every attempt, the delay lies in [0, maxMs], jitter
 * included; with the jitter source fixed it never shrinks from one attempt to
 * the next (for a multiplier ≥ 1), and it stays within ±jitter of the capped base.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { retryDelay, type BackoffOptions } from '../../src/core/retry.js'
import { params } from './fc.js'

/** A finite number ≥ 0: small values, whole milliseconds, and anything up to 1e12. */
const nonNegative = fc.oneof(
  fc.constantFrom(0, 1),
  fc.nat(100_000),
  fc.double({ min: 0, max: 1e12, noNaN: true, noDefaultInfinity: true })
)
const multiplier = fc.oneof(fc.constantFrom(0, 0.5, 1, 2, 10), fc.double({ min: 0, max: 100, noNaN: true, noDefaultInfinity: true }))
const growing = fc.oneof(fc.constantFrom(1, 1.5, 2, 10), fc.double({ min: 1, max: 100, noNaN: true, noDefaultInfinity: true }))
const jitter = fc.oneof(fc.constantFrom(0, 0.2, 1), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 10, noNaN: true }))
/** Values of a random source in [0, 1). */
const unit = fc.oneof(fc.constantFrom(0, 0.5, 1 - Number.EPSILON), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }))
/** Attempt numbers: the first few, and far past any cap (consecutive errors can pile up). */
const attemptNo = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 100_000 }))

const policy = fc.record({ initialMs: nonNegative, multiplier, maxMs: nonNegative, jitter })

describe('retryDelay (properties)', () => {
  it('is in [0, maxMs] for every valid policy, attempt and random value', () => {
    fc.assert(fc.property(policy, attemptNo, unit, (p, n, r) => {
      const d = retryDelay(n, { ...p, random: () => r })
      expect(Number.isFinite(d), `delay ${d}`).toBe(true)
      expect(d).toBeGreaterThanOrEqual(0)
      expect(d).toBeLessThanOrEqual(p.maxMs)
    }), params(20))
  })

  it('stays within ±jitter of the capped exponential base (jitter ≤ 1)', () => {
    const p = fc.record({ initialMs: nonNegative, multiplier: growing, maxMs: nonNegative, jitter: fc.double({ min: 0, max: 1, noNaN: true }) })
    fc.assert(fc.property(p, fc.integer({ min: 1, max: 60 }), unit, (o, n, r) => {
      const base = Math.min(o.maxMs, o.initialMs * o.multiplier ** (n - 1))
      const d = retryDelay(n, { ...o, random: () => r })
      // rounded to whole milliseconds, then capped
      expect(d).toBeGreaterThanOrEqual(Math.min(o.maxMs, Math.max(0, base * (1 - o.jitter) - 0.5)) - 1e-6 * base)
      expect(d).toBeLessThanOrEqual(Math.min(o.maxMs, base * (1 + o.jitter) + 0.5) + 1e-6 * base)
    }), params(10))
  })

  it('without jitter, or with a fixed random value, never decreases with the attempt (multiplier ≥ 1)', () => {
    const p = fc.record({ initialMs: nonNegative, multiplier: growing, maxMs: nonNegative, jitter })
    fc.assert(fc.property(p, unit, fc.integer({ min: 1, max: 2_000 }), (o, r, from) => {
      const fixed: BackoffOptions = { ...o, random: () => r }
      const none: BackoffOptions = { ...o, jitter: 0 }
      let prevFixed = -Infinity
      let prevNone = -Infinity
      for (let n = from; n < from + 40; n++) {
        const a = retryDelay(n, fixed)
        const b = retryDelay(n, none)
        expect(a, `attempt ${n}`).toBeGreaterThanOrEqual(prevFixed)
        expect(b, `attempt ${n}`).toBeGreaterThanOrEqual(prevNone)
        prevFixed = a
        prevNone = b
      }
    }), params(5))
  })

  it('reaches the cap and stays there (without jitter, multiplier > 1, initial > 0)', () => {
    const p = fc.record({
      initialMs: fc.integer({ min: 1, max: 10_000 }),
      multiplier: fc.double({ min: 1.1, max: 10, noNaN: true }),
      maxMs: fc.integer({ min: 0, max: 10_000_000 }),
      jitter: fc.constant(0)
    })
    fc.assert(fc.property(p, fc.integer({ min: 1, max: 1_000_000 }), (o, extra) => {
      // initial × multiplier^(n-1) ≥ max once n - 1 ≥ log(max / initial) / log(multiplier)
      const n = 1 + Math.max(0, Math.ceil(Math.log(Math.max(1, o.maxMs / o.initialMs)) / Math.log(o.multiplier)))
      expect(retryDelay(n, o)).toBe(o.maxMs)
      expect(retryDelay(n + extra, o)).toBe(o.maxMs)
    }), params(5))
  })

  it('treats attempt numbers below 1 or fractional like the attempt they round down to, at least 1', () => {
    fc.assert(fc.property(policy, fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true }), unit, (p, n, r) => {
      const o = { ...p, random: () => r }
      expect(retryDelay(n, o)).toBe(retryDelay(Math.max(1, Math.floor(n)), o))
    }), params(5))
  })
})
