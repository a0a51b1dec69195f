/** The choice of a gateway (src/gateways/selector.ts), on gateways whose counters are set as a download would leave them. */
import { describe, it, expect } from 'vitest'
import { Gateway } from '../../src/gateways/gateway.js'
import { HealthRegistry } from '../../src/gateways/health.js'
import { ScoredSelector } from '../../src/gateways/selector.js'

function gateways (...urls: string[]): Gateway[] {
  const reg = new HealthRegistry({ now: () => 0 })
  return urls.map(u => new Gateway(reg.get(u)))
}

describe('ScoredSelector', () => {
  it('for tree streams (no speed), a gateway whose only request was out-raced or handed on (reliability 0, no error) still gets its share by load', () => {
    const [a, b] = gateways('http://a', 'http://b') as [Gateway, Gateway]
    a.requests = 1 // answered without a block: its request was ended by the download itself
    b.requests = 5
    b.successes = 5
    expect(a.reliability()).toBe(0)
    const selector = new ScoredSelector([a, b], 16)
    const streams = new Map([[a, 0], [b, 1]])
    // b carries one stream, a none: a is chosen
    expect(selector.best(0, [a, b], g => streams.get(g) ?? 0, false)).toBe(a)
    // when both carry as many, the more reliable one
    streams.set(a, 1)
    expect(selector.best(0, [a, b], g => streams.get(g) ?? 0, false)).toBe(b)
    // by speed (runs and blocks), reliability still weighs fully: b even with more load
    streams.set(a, 0)
    streams.set(b, 3)
    expect(selector.best(0, [a, b], g => streams.get(g) ?? 0, true)).toBe(b)
  })
})
