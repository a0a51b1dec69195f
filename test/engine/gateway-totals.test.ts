/**
 * A gateway's throughput in `gatewayStats()` (and so `/api/gateways` and the dashboard) is what it
 * sends now, all downloads together: the dashboard showed 547 KiB/s for a gateway sending about
 * 3 MiB/s, the per-request EWMA a pool ranks gateways by (each of n requests in flight sees about
 * 1/n of the gateway's bandwidth), kept at its last value after the downloads ended.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { GatewayTotalsBook, THROUGHPUT_WINDOW_MS } from '../../src/engine/gateway-totals.js'
import type { GatewayPool, GatewayStats } from '../../src/gateways/pool.js'
import { KiB, MiB, progressReaches, world, type World } from '../helpers.js'

const URL_A = 'http://127.0.0.1:1'

/** A pool whose one gateway has received `bytes` so far, with `inFlight` requests that each measured 1/inFlight of the rate. */
class FakePool {
  bytes = 0
  inFlight = 8
  stats (): GatewayStats[] {
    return [{
      url: URL_A,
      requests: 0,
      successes: 0,
      errors: 0,
      notFound: 0,
      invalidBlocks: 0,
      bytes: this.bytes,
      inFlight: this.inFlight,
      throughputBps: 123,
      latencyMs: 50,
      reliability: 1,
      dropped: false,
      blockedUntil: 0
    }]
  }
}

/** Runs `fn` with `pool` tracked by `book`, and returns a function that ends the run. */
function tracked (book: GatewayTotalsBook, pool: FakePool): () => Promise<void> {
  let end: () => void = () => {}
  const running = book.track(pool as unknown as GatewayPool, async () => { await new Promise<void>(resolve => { end = resolve }) })
  return async () => { end(); await running }
}

describe('GatewayTotalsBook throughput', () => {
  it('is the bytes all pools received over the last seconds, not a pool\'s per-request figure', async () => {
    let t = 1_000_000
    const book = new GatewayTotalsBook([URL_A], { now: () => t, sampleMs: 0 })
    expect(book.stats()[0]?.throughputBps).toBe(0)
    const a = new FakePool()
    const b = new FakePool()
    const endA = tracked(book, a)
    const endB = tracked(book, b)
    // 3 MiB/s from the gateway, two downloads sharing it: 2 MiB/s and 1 MiB/s
    for (let s = 1; s <= 8; s++) {
      t += 1000
      a.bytes += 2 * MiB
      b.bytes += 1 * MiB
      const g = book.stats()[0]!
      expect(g.throughputBps).toBe(3 * MiB)
      expect(g.bytes).toBe(s * 3 * MiB)
    }
    await endA()
    // the finished pool's bytes are the book's now: the rate does not jump
    t += 1000
    b.bytes += MiB
    expect(book.stats()[0]?.throughputBps).toBe(Math.round((4 * 3 * MiB + MiB) * 1000 / 5000))
    await endB()
    // nothing more arrives: the rate falls to 0 within the window and stays there
    t += THROUGHPUT_WINDOW_MS + 1
    expect(book.stats()[0]?.throughputBps).toBe(0)
    t += 60_000
    expect(book.stats()[0]?.throughputBps).toBe(0)
  })

  it('shows a gateway that starts sending after a quiet hour at its rate at once', async () => {
    let t = 0
    const book = new GatewayTotalsBook([URL_A], { now: () => t, sampleMs: 0 })
    const first = new FakePool()
    const endFirst = tracked(book, first)
    t += 1000
    first.bytes = 10 * MiB
    book.stats()
    await endFirst()
    t += 3_600_000
    expect(book.stats()[0]?.throughputBps).toBe(0)
    const next = new FakePool()
    const endNext = tracked(book, next)
    t += 2000
    next.bytes = 4 * MiB
    expect(book.stats()[0]?.throughputBps).toBe(2 * MiB)
    await endNext()
  })

  it('polled in a loop, measures the last seconds only', async () => {
    let t = 0
    const book = new GatewayTotalsBook([URL_A], { now: () => t, sampleMs: 0 })
    const pool = new FakePool()
    const end = tracked(book, pool)
    // 10 s at 1 KiB a millisecond, then 10 s at 2 KiB, asked every millisecond
    for (let i = 0; i < 20_000; i++) {
      t += 1
      pool.bytes += i < 10_000 ? 1024 : 2048
      book.stats()
    }
    expect(book.stats()[0]?.throughputBps).toBe(2048 * 1000)
    await end()
  })
})

describe('gatewayStats() throughput against the wire', () => {
  let w: World | undefined
  afterEach(async () => { await w?.close(); w = undefined })

  it('is within a factor 1.5 of the bytes per second a capped gateway sends, while 8 requests share it', async () => {
    w = await world({ size: 16 * MiB, maxBytesPerSecond: 3 * MiB, chunkSize: 16 * KiB })
    // the book's samples are real time: the world's fake clock only moves with sleeps
    const dl = await w.open({ now: Date.now })
    const gw = w.gateways[0]!
    const job = await dl.add(w.cid, { output: join(w.dir, 'o') })
    await progressReaches(dl, job.id, 4 * MiB)
    const start = { t: performance.now(), bytes: gw.bytesSent() }
    // sampled by the book's own timer meanwhile: nobody asks for stats in between
    await new Promise(resolve => setTimeout(resolve, THROUGHPUT_WINDOW_MS))
    const stats = dl.gatewayStats()[0]!
    const sent = (gw.bytesSent() - start.bytes) * 1000 / (performance.now() - start.t)
    expect(sent).toBeGreaterThan(2 * MiB)
    expect(stats.throughputBps).toBeGreaterThan(sent / 1.5)
    expect(stats.throughputBps).toBeLessThan(sent * 1.5)
    expect((await job.done).status).toBe('success')
  })
})
