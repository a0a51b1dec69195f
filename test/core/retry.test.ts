import { describe, it, expect } from 'vitest'
import { retryDelay, parseRetryAfter } from '../../src/core/retry.js'

describe('retryDelay', () => {
  it('follows the seed: 1 s, 2 s, 4 s without jitter', () => {
    const o = { jitter: 0 }
    expect([1, 2, 3].map(n => retryDelay(n, o))).toEqual([1000, 2000, 4000])
  })

  it('stays within ±jitter of the base and never exceeds the cap', () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const d = retryDelay(2, { jitter: 0.2, random: () => r })
      expect(d).toBeGreaterThanOrEqual(1600)
      expect(d).toBeLessThanOrEqual(2400)
    }
    expect(retryDelay(20, { maxMs: 5000, random: () => 0.999 })).toBe(5000)
  })

  it('is monotone in the attempt until the cap (no jitter)', () => {
    let prev = 0
    for (let n = 1; n < 30; n++) {
      const d = retryDelay(n, { jitter: 0, maxMs: 60_000 })
      expect(d).toBeGreaterThanOrEqual(prev)
      prev = d
    }
    expect(prev).toBe(60_000)
  })
})

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  it('reads delta-seconds', () => {
    expect(parseRetryAfter('3', now)).toBe(3000)
    expect(parseRetryAfter(' 0 ', now)).toBe(0)
  })
  it('reads an HTTP-date relative to now', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000)
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0)
  })
  it('caps long waits', () => {
    expect(parseRetryAfter('86400', now, 60_000)).toBe(60_000)
  })
  it('ignores missing and garbage values', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined()
    expect(parseRetryAfter('', now)).toBeUndefined()
    expect(parseRetryAfter('soon', now)).toBeUndefined()
    expect(parseRetryAfter('-5', now)).toBeUndefined()
  })
})
