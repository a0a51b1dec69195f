/**
 * Providers found by delegated routing: multiaddrs as gateway URLs, a test
 * router on 127.0.0.1 answering JSON and NDJSON (unknown fields and
 * protocols ignored), 404, 429 with Retry-After, 500, a slow answer, caching;
 * downloads that get their blocks from a discovered provider, and a provider
 * that lies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { GATEWAY_PROTOCOL, ProviderFinder, multiaddrToUrl } from '../../src/routing/providers.js'
import { HttpClient } from '../../src/gateways/http.js'
import { MemoryBlocks, startTestGateway, startTestRouter, type TestGateway, type TestRouter } from '../../src/testing/index.js'
import { world, runCli, lastRecord, sha256, MiB, type World } from '../helpers.js'

/** A provider record as routers send it, for a gateway at `url` (http://127.0.0.1:PORT). */
function record (url: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const port = new URL(url).port
  return { Schema: 'peer', ID: '12D3KooWExample', Addrs: [`/ip4/127.0.0.1/tcp/${port}/http`], Protocols: [GATEWAY_PROTOCOL], ...extra }
}

describe('multiaddrToUrl', () => {
  it('turns the multiaddrs of HTTP gateways into base URLs', () => {
    expect(multiaddrToUrl('/dns4/gw.example.org/tcp/443/https')).toBe('https://gw.example.org')
    expect(multiaddrToUrl('/dns/gw.example.org/tcp/443/tls/http')).toBe('https://gw.example.org')
    expect(multiaddrToUrl('/dns6/gw.example.org/tcp/8443/tls/http/p2p/12D3KooWExample')).toBe('https://gw.example.org:8443')
    expect(multiaddrToUrl('/ip4/203.0.114.7/tcp/8080/http')).toBe('http://203.0.114.7:8080')
    expect(multiaddrToUrl('/ip6/2001:4860::8888/tcp/80/http')).toBe('http://[2001:4860::8888]')
  })

  it('leaves out what is not an HTTP gateway, and local addresses unless allowed', () => {
    for (const a of ['/ip4/203.0.114.7/udp/4001/quic-v1', '/ip4/203.0.114.7/tcp/4001', '/ip4/203.0.114.7/tcp/99999/http', '/dnsaddr/example.org',
      '/ip4/not-an-ip/tcp/80/http', '/dns4/bad_name!/tcp/443/https', 'http://example.org', '/ip4/203.0.114.7/tcp/443/tls/ws',
      // names a URL reads as addresses (loopback, here): not names
      '/dns4/2130706433/tcp/8080/http', '/dns/127.1/tcp/80/http', '/dns/0x7f000001/tcp/80/http']) {
      expect(multiaddrToUrl(a), a).toBeUndefined()
    }
    for (const a of ['/ip4/127.0.0.1/tcp/8080/http', '/ip4/10.1.2.3/tcp/80/http', '/ip4/169.254.169.254/tcp/80/http', '/ip6/::1/tcp/80/http', '/dns4/localhost/tcp/80/http']) {
      expect(multiaddrToUrl(a), a).toBeUndefined()
      expect(multiaddrToUrl(a, true), a).toBeDefined()
    }
  })
})

describe('ProviderFinder against a test router', () => {
  let router: TestRouter
  let http: HttpClient
  const cid = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
  beforeAll(async () => {
    router = await startTestRouter()
    http = new HttpClient({ timeoutMs: 2_000 })
  })
  afterAll(async () => {
    await http.close()
    await router.close()
  })
  const finder = (now = Date.now): ProviderFinder => new ProviderFinder({ http, routers: [router.url], allowLocal: true, now })

  it('reads NDJSON and JSON answers, asks for gateway providers only, ignores unknown fields, protocols and schemas', async () => {
    const records = [
      record('http://127.0.0.1:1001', { Extra: { nested: true } }),
      { Schema: 'peer', ID: 'x', Addrs: ['/ip4/127.0.0.1/tcp/1002/http'], Protocols: ['transport-bitswap'] },
      { Schema: 'future-schema', Protocols: [GATEWAY_PROTOCOL], Addrs: 'not a list' },
      'not an object',
      record('http://127.0.0.1:1003', { Protocols: ['transport-bitswap', GATEWAY_PROTOCOL] })
    ]
    for (const format of ['ndjson', 'json'] as const) {
      router.setProviders(cid, records, { format, cacheControl: 'no-store' })
      const before = router.requests.length
      const answers = await finder().find(cid, () => {})
      expect(answers).toEqual([{ router: router.url, urls: ['http://127.0.0.1:1001', 'http://127.0.0.1:1003'] }])
      const asked = router.requests[before]
      expect(asked?.url).toBe(`/routing/v1/providers/${cid}?filter-protocols=${GATEWAY_PROTOCOL}`)
      expect(asked?.accept).toContain('application/x-ndjson')
    }
  })

  it('a router that does not answer in time is given up (a block waiting for providers does not wait forever)', async () => {
    router.setFault({ type: 'latency', ms: 5_000 })
    try {
      const f = new ProviderFinder({ http, routers: [router.url], allowLocal: true, timeoutMs: 200 })
      const started = Date.now()
      const answers = await f.find(cid, () => {})
      expect(answers[0]?.error).toMatch(/no whole answer within 0.2 s/)
      expect(Date.now() - started).toBeLessThan(4_000)
    } finally {
      router.setFault(undefined)
    }
  })

  it('a 404 is no providers; answers are kept for their max-age', async () => {
    router.setProviders(cid, undefined)
    let t = 1_000_000
    const f = finder(() => t)
    const before = router.requests.length
    expect((await f.find(cid, () => {}))[0]?.urls).toEqual([])
    router.setProviders(cid, [record('http://127.0.0.1:1001')], { cacheControl: 'public, max-age=60' })
    // the 404 is kept too (5 minutes without a max-age)
    expect((await f.find(cid, () => {}))[0]?.urls).toEqual([])
    t += 6 * 60_000
    expect((await f.find(cid, () => {}))[0]?.urls).toEqual(['http://127.0.0.1:1001'])
    t += 30_000
    expect((await f.find(cid, () => {}))[0]?.urls).toEqual(['http://127.0.0.1:1001'])
    expect(router.requests.length - before).toBe(2)
  })

  it('a router that answers 429 is left alone for its Retry-After; one that answers 500 for a while', async () => {
    let t = 1_000_000
    const f = finder(() => t)
    const before = router.requests.length
    router.setFault({ type: 'status', status: 429, retryAfter: 30 })
    const first = await f.find(cid, () => {})
    expect(first[0]).toMatchObject({ urls: [], error: 'HTTP 429' })
    router.setFault(undefined)
    router.setProviders(cid, [record('http://127.0.0.1:1001')], { cacheControl: 'no-store' })
    expect((await f.find(cid, () => {}))[0]?.error).toMatch(/left alone/)
    t += 31_000
    expect((await f.find(cid, () => {}))[0]?.urls).toEqual(['http://127.0.0.1:1001'])
    router.setFault({ type: 'status', status: 500 })
    expect((await f.find(cid, () => {}))[0]?.error).toBe('HTTP 500')
    router.setFault(undefined)
    expect((await f.find(cid, () => {}))[0]?.error).toMatch(/left alone/)
    expect(router.requests.length - before).toBe(3)
  })
})

describe('downloads from providers found by routing', () => {
  let w: World
  let router: TestRouter
  let empty: TestGateway
  let n = 0
  beforeAll(async () => {
    w = await world({ size: 2 * MiB, seed: 41 })
    router = await startTestRouter()
    // a configured gateway that has nothing: every block answers 404
    empty = await startTestGateway({ blocks: new MemoryBlocks() })
  })
  afterAll(async () => {
    await Promise.all([router.close(), empty.close()])
    await w.close()
  })

  it('a download whose only source is a provider the router named completes, its blocks from that provider', async () => {
    const provider = w.gateways[0]!
    router.setProviders(w.cid, [record(provider.url)])
    const dl = await w.open({ gateways: [empty.url], routers: [router.url], allowLocalProviders: true })
    const added: string[] = []
    dl.on('cidget:gateway', (e) => { if (e.state === 'added') added.push(e.gateway) })
    try {
      const before = provider.bytesSent()
      const rec = await (await dl.add(w.cid, { output: join(w.dir, `p${++n}.bin`) })).done
      expect(rec.status, rec.error ?? '').toBe('success')
      expect(sha256(await readFile(rec.output))).toBe(w.sha)
      expect(added).toEqual([provider.url])
      expect(provider.bytesSent() - before).toBeGreaterThanOrEqual(2 * MiB)
      expect(router.requests.some((r) => r.url.startsWith(`/routing/v1/providers/${w.cid}`))).toBe(true)
    } finally {
      await dl.close()
    }
  })

  it('a provider on a loopback address is left out without allowLocalProviders: the download finds no source', async () => {
    const provider = w.gateways[0]!
    router.setProviders(w.cid, [record(provider.url)])
    const dl = await w.open({ gateways: [empty.url], routers: [router.url], maxRetryAttempts: 1 })
    try {
      const before = provider.requests.length
      const rec = await (await dl.add(w.cid, { output: join(w.dir, `l${++n}.bin`) })).done
      expect(rec.status).toBe('failed')
      expect(rec.errorCode).toBe('CIDGET_ERR_NOT_FOUND')
      expect(provider.requests.length).toBe(before)
    } finally {
      await dl.close()
    }
  })

  it('a slow router: the download starts from the gateways, and the provider joins when the answer comes', async () => {
    const provider = w.gateways[0]!
    router.setProviders(w.cid, [record(provider.url)])
    router.setFault({ type: 'latency', ms: 300 })
    const dl = await w.open({ gateways: [empty.url], routers: [router.url], allowLocalProviders: true })
    try {
      const first = new Promise<number>((resolve) => { empty.once('request', () => { resolve(router.requests.filter((r) => r.status !== 0).length) }) })
      const answered = router.requests.filter((r) => r.status !== 0).length
      const rec = await (await dl.add(w.cid, { output: join(w.dir, `s${++n}.bin`) })).done
      // the configured gateway was asked before the router had answered
      expect(await first).toBe(answered)
      expect(rec.status, rec.error ?? '').toBe('success')
      expect(sha256(await readFile(rec.output))).toBe(w.sha)
    } finally {
      router.setFault(undefined)
      await dl.close()
    }
  })

  it('a provider that sends wrong blocks is dropped, and nothing of it is written', async () => {
    const liar = await startTestGateway({ blocks: w.blocks })
    liar.addFault({ fault: { type: 'wrong-block' } })
    router.setProviders(w.cid, [record(liar.url)])
    // the only source of the content is the liar
    const dl = await w.open({ gateways: [empty.url], routers: [router.url], allowLocalProviders: true })
    const dropped: string[] = []
    dl.on('cidget:gateway', (e) => { if (e.state === 'dropped') dropped.push(e.gateway) })
    try {
      const output = join(w.dir, `w${++n}.bin`)
      const rec = await (await dl.add(w.cid, { output })).done
      expect(rec.status).toBe('failed')
      // the configured gateway answered 404, the provider was dropped for an invalid block
      expect(rec.errorCode).toBe('CIDGET_ERR_BLOCK_UNAVAILABLE')
      expect(rec.error).toMatch(/1 dropped for invalid blocks/)
      expect(liar.requests.length).toBeGreaterThan(0)
      expect(dropped).toEqual([liar.url])
      expect(existsSync(output)).toBe(false)
      expect(rec.currentSize).toBe(0)
    } finally {
      await dl.close()
      await liar.close()
    }
  })

  it('the CLI: --router and --allow-local find the provider; --no-routing does not ask', async () => {
    const provider = w.gateways[0]!
    router.setProviders(w.cid, [record(provider.url)])
    const env = { HOME: w.dir, CIDGET_STATE: join(w.dir, 'cli.db'), CIDGET_MAX_RETRY_ATTEMPTS: '1' }
    const ok = await runCli(['get', w.cid, '-o', join(w.dir, `c${++n}.bin`), '-g', empty.url, '--router', router.url, '--allow-local', '--json'], { env })
    expect(ok.code, ok.stderr).toBe(0)
    expect(sha256(await readFile(lastRecord(ok.stdout).output))).toBe(w.sha)
    const before = router.requests.length
    const off = await runCli(['get', w.cid, '-o', join(w.dir, `c${++n}.bin`), '-g', empty.url, '--router', router.url, '--allow-local', '--no-routing', '--json'], { env })
    expect(off.code).toBe(1)
    expect(lastRecord(off.stdout).errorCode).toBe('CIDGET_ERR_NOT_FOUND')
    expect(router.requests.length).toBe(before)
  })

  it('routing off (routing: false): the router is not asked', async () => {
    const dl = await w.open({ routers: [router.url], routing: false })
    try {
      const before = router.requests.length
      const rec = await (await dl.add(w.cid, { output: join(w.dir, `o${++n}.bin`) })).done
      expect(rec.status).toBe('success')
      expect(router.requests.length).toBe(before)
    } finally {
      await dl.close()
    }
  })
})
