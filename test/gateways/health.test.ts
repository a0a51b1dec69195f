import { describe, it, expect } from 'vitest'
import { CidgetError } from '../../src/core/errors.js'
import { HealthRegistry } from '../../src/gateways/health.js'
import { GatewayRotation } from '../../src/gateways/rotation.js'

describe('HealthRegistry', () => {
  it('keeps one record per gateway (trailing slashes aside) and backs off on consecutive errors or Retry-After', () => {
    let t = 1_000
    const reg = new HealthRegistry({ now: () => t, backoff: { initialMs: 100, multiplier: 2, maxMs: 1_000, jitter: 0 }, maxRetryAfterMs: 5_000 })
    const a = reg.get('http://a/')
    expect(reg.get('http://a')).toBe(a)
    const err = new CidgetError('CIDGET_ERR_NETWORK', 'reset')
    expect(a.backOff(err)).toEqual({ waitMs: 100, told: false, consecutiveErrors: 1 })
    expect(a.backOff(err)).toEqual({ waitMs: 200, told: false, consecutiveErrors: 2 })
    expect(a.blockedUntil).toBe(1_200)
    expect(a.blocked()).toBe(true)
    t = 1_200
    expect(a.blocked()).toBe(false)
    expect(a.served()).toBe(true)
    expect(a.served()).toBe(false)
    expect(a.backOff(new CidgetError('CIDGET_ERR_HTTP_STATUS', '429', { retryAfterMs: 60_000 }))).toEqual({ waitMs: 5_000, told: true, consecutiveErrors: 1 })
  })

  it('forgets the least recently used gateways beyond its bound, never the configured ones', () => {
    const reg = new HealthRegistry({ keep: ['http://kept'], maxGateways: 2 })
    const kept = reg.get('http://kept')
    const one = reg.get('http://one')
    reg.get('http://two')
    reg.get('http://one') // used again: two is now the oldest other
    reg.get('http://three')
    expect(reg.peek('http://two')).toBeUndefined()
    expect(reg.peek('http://one')).toBe(one)
    expect(reg.peek('http://kept')).toBe(kept)
    expect(reg.size).toBe(3)
  })

  it('a rotation passes over a gateway another download backs off, and shares the Retry-After it is told', () => {
    const reg = new HealthRegistry({ backoff: { initialMs: 1_000, jitter: 0 } })
    const other = new GatewayRotation(['http://a', 'http://b'], null, 3, reg)
    other.block('http://a', 5_000)
    const mine = new GatewayRotation(['http://a', 'http://b'], null, 3, reg)
    expect(mine.pick(1_000)).toEqual({ gateway: 'http://b', waitMs: 0 })
    expect(mine.pick(5_000)).toEqual({ gateway: 'http://b', waitMs: 0 }) // stays on the gateway that works
    mine.advance()
    expect(mine.pick(5_000)).toEqual({ gateway: 'http://a', waitMs: 0 })
  })
})
