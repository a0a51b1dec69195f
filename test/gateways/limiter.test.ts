/**
 * Bandwidth limits: the rate syntax, the limiter's schedule on an injected
 * clock (what it lets through follows the limit; a change applies from then
 * on), and every body byte of a limited HttpClient passing through it,
 * whatever the request (raw block, CAR run) and however many run at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RateLimiter, parseRate } from '../../src/gateways/limiter.js'
import { HttpClient } from '../../src/gateways/http.js'
import { CidgetError } from '../../src/core/errors.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { KiB, MiB } from '../helpers.js'

/** A clock that moves only when the limiter sleeps; each sleep is recorded. */
function clock (): { now: () => number, sleep: (ms: number) => Promise<void>, sleeps: number[], advance: (ms: number) => void } {
  let t = 1_000_000
  const sleeps: number[] = []
  return {
    now: () => t,
    sleep: async (ms) => { sleeps.push(ms); t += ms },
    sleeps,
    advance: (ms) => { t += ms }
  }
}

describe('parseRate', () => {
  it('reads curl\'s syntax: bytes, K, M, G (powers of 1024), fractions; 0 and none are no limit', () => {
    expect(parseRate('800')).toBe(800)
    expect(parseRate('500K')).toBe(500 * 1024)
    expect(parseRate('2m')).toBe(2 * MiB)
    expect(parseRate('1.5G')).toBe(1.5 * 1024 ** 3)
    expect(parseRate(' 64k ')).toBe(64 * KiB)
    expect(parseRate('0')).toBeUndefined()
    expect(parseRate('none')).toBeUndefined()
    expect(parseRate(4096)).toBe(4096)
    for (const bad of ['fast', '-1K', '1T', '', '0.1']) expect(() => parseRate(bad)).toThrow(CidgetError)
  })
})

describe('RateLimiter on an injected clock', () => {
  it('lets bytes through at the rate: 4 MiB at 1 MiB/s take 4 s', async () => {
    const c = clock()
    const limiter = new RateLimiter({ rate: MiB, now: c.now, sleep: c.sleep })
    const start = c.now()
    for (let i = 0; i < 64; i++) await limiter.take(64 * KiB)
    expect(c.now() - start).toBe(4000)
    expect(limiter.passed).toBe(4 * MiB)
  })

  it('takers at once wait in turn, each for the bytes before its own', async () => {
    let t = 0
    const naps: Array<{ ms: number, wake: () => void }> = []
    const limiter = new RateLimiter({ rate: 1000, intervalMs: 0, now: () => t, sleep: async (ms) => await new Promise<void>((resolve) => { naps.push({ ms, wake: resolve }) }) })
    // three at once, the clock still: the second waits for the first's 500 bytes and its own, the third for 2000 in all
    const all = Promise.all([limiter.take(500), limiter.take(500), limiter.take(1000)])
    expect(naps.map((n) => n.ms)).toEqual([500, 1000, 2000])
    t = 2000
    for (const n of naps) n.wake()
    await all
  })

  it('a new rate applies to what is owed and to what comes after; none lifts the limit', async () => {
    const c = clock()
    const limiter = new RateLimiter({ rate: 1000, intervalMs: 0, now: c.now, sleep: c.sleep })
    await limiter.take(1000) // 1 s at 1000 B/s
    expect(c.sleeps).toEqual([1000])
    limiter.setRate(4000)
    await limiter.take(4000) // 1 s at 4000 B/s
    expect(c.sleeps).toEqual([1000, 1000])
    limiter.setRate(undefined)
    await limiter.take(10 * MiB)
    expect(c.sleeps).toHaveLength(2)
    expect(limiter.rate).toBeUndefined()
  })

  it('an idle limiter starts again with one interval\'s burst, not with the time it was idle', async () => {
    const c = clock()
    const limiter = new RateLimiter({ rate: 1000, intervalMs: 100, now: c.now, sleep: c.sleep })
    c.advance(60_000)
    await limiter.take(100) // the burst
    expect(c.sleeps).toEqual([])
    await limiter.take(1000)
    expect(c.sleeps).toEqual([1000])
  })

  it('takers already waiting are woken by a new rate and wait only what their bytes need at it', async () => {
    let t = 0
    const naps: Array<{ ms: number, signal: AbortSignal, resolve: () => void }> = []
    const limiter = new RateLimiter({
      rate: 1000,
      intervalMs: 0,
      now: () => t,
      sleep: async (ms, signal) => await new Promise<void>((resolve, reject) => {
        naps.push({ ms, signal, resolve })
        signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })
    })
    const waiting = limiter.take(10_000) // 10 s at 1000 B/s
    expect(naps.map((n) => n.ms)).toEqual([10_000])
    t = 1000
    limiter.setRate(9000) // 9000 bytes owed: 1 s at the new rate
    await new Promise((resolve) => setImmediate(resolve))
    expect(naps.map((n) => n.ms)).toEqual([10_000, 1000])
    t = 2000
    naps[1]?.resolve()
    await waiting
    limiter.setRate(undefined)
    await limiter.take(1_000_000)
    expect(naps).toHaveLength(2)
  })

  it('a wait ends with the signal', async () => {
    const limiter = new RateLimiter({ rate: 1 })
    const stop = new AbortController()
    const waiting = limiter.take(1_000_000, stop.signal)
    stop.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
  })
})

describe('a limited HttpClient', () => {
  let gw: TestGateway
  let cid: string
  const data = seededBytes(2 * MiB, 5)
  beforeAll(async () => {
    const blocks = new MemoryBlocks()
    cid = (await addFile(blocks, data)).toString()
    gw = await startTestGateway({ blocks })
  })
  afterAll(async () => { await gw.close() })

  it('every body byte of every request, a CAR and raw blocks at once, passes through the process\'s limit and the download\'s', async () => {
    const global = new RateLimiter({ rate: 1024 ** 3 })
    const own = new RateLimiter({ rate: 1024 ** 3 })
    const http = new HttpClient({ limiters: [global] })
    const limited = http.limited(own)
    try {
      const read = async (client: HttpClient, url: string): Promise<number> => {
        const res = await client.request(url, { gateway: gw.url })
        let n = 0
        for await (const chunk of res.body) n += chunk.byteLength
        return n
      }
      const sizes = await Promise.all([
        read(limited, `${gw.url}/ipfs/${cid}?format=car&dag-scope=entity`),
        read(limited, `${gw.url}/ipfs/${cid}?format=raw`),
        read(http, `${gw.url}/ipfs/${cid}?format=raw`)
      ])
      const all = sizes.reduce((a, b) => a + b, 0)
      expect(sizes[0]).toBeGreaterThan(data.byteLength)
      expect(global.passed).toBe(all)
      expect(own.passed).toBe((sizes[0] ?? 0) + (sizes[1] ?? 0))
      expect(gw.bytesSent()).toBe(all)
    } finally {
      await http.close()
    }
  })
})
