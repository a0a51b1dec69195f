/**
 * Which proxy a request takes (flag, config, the environment as curl reads
 * it), and the service's address guard in front of a proxy: a refused host is
 * refused before anything reaches the proxy. Real servers on 127.0.0.1; names
 * resolve through an injected lookup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, LookupFunction } from 'node:net'
import { resolveProxy, checkProxyUrl, redact } from '../../src/gateways/proxy.js'
import { AddressGuard } from '../../src/gateways/address.js'
import { HttpClient, readBody } from '../../src/gateways/http.js'
import { CidgetError } from '../../src/core/errors.js'
import { startTestProxy, type TestProxy } from '../../src/testing/index.js'

describe('resolveProxy', () => {
  it('reads the environment as curl does: lower-case http_proxy only, HTTPS_PROXY in both cases, ALL_PROXY as the fallback, NO_PROXY', () => {
    expect(resolveProxy(undefined, {})).toBeUndefined()
    // a CGI program's HTTP_PROXY comes from a request header: curl ignores the upper-case one
    expect(resolveProxy(undefined, { HTTP_PROXY: 'http://p:1' })).toBeUndefined()
    expect(resolveProxy(undefined, { http_proxy: 'http://p:1' })).toEqual({ http: 'http://p:1' })
    expect(resolveProxy(undefined, { HTTPS_PROXY: 'http://s:2', NO_PROXY: 'a.example,.b.example' })).toEqual({ https: 'http://s:2', noProxy: 'a.example,.b.example' })
    expect(resolveProxy(undefined, { https_proxy: 'http://low:2', HTTPS_PROXY: 'http://up:2' })).toEqual({ https: 'http://low:2' })
    expect(resolveProxy(undefined, { ALL_PROXY: 'http://all:3', https_proxy: 'http://s:2' })).toEqual({ http: 'http://all:3', https: 'http://s:2' })
    // bare host:port is an http proxy, as curl takes it
    expect(resolveProxy(undefined, { http_proxy: 'proxy.example:3128' })).toEqual({ http: 'http://proxy.example:3128' })
  })

  it('an explicit proxy (the flag, else the config file) serves both kinds of target; NO_PROXY still applies', () => {
    expect(resolveProxy('http://u:p@x:8080', { http_proxy: 'http://env:1', no_proxy: 'localhost' })).toEqual({ http: 'http://u:p@x:8080', https: 'http://u:p@x:8080', noProxy: 'localhost' })
  })

  it('refuses what is not an http(s) proxy URL, without printing its password', () => {
    expect(() => checkProxyUrl('socks5://h:1', '--proxy')).toThrow(/must be http/)
    expect(() => checkProxyUrl('http://h:1/path', '--proxy')).toThrow(/path/)
    expect(() => checkProxyUrl('http://u:secret@[bad', '--proxy')).toThrow(CidgetError)
    try {
      checkProxyUrl('http://u:secret@[bad', '--proxy')
    } catch (err) {
      expect((err as Error).message).not.toContain('secret')
    }
    expect(redact('http://u:secret@h:1')).toBe('http://u:***@h:1')
  })
})

describe('HttpClient through a proxy, with the service\'s address guard', () => {
  let proxy: TestProxy
  let server: Server
  let origin: string
  let hits = 0
  const lookup = ((hostname: string, options: { all?: boolean }, callback: (err: Error | null, address: unknown, family?: number) => void) => {
    const address = hostname === 'inside.example' ? '127.0.0.1' : hostname === 'public.example' ? '93.184.215.14' : undefined
    process.nextTick(() => {
      if (address === undefined) callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '')
      else if (options.all === true) callback(null, [{ address, family: 4 }])
      else callback(null, address, 4)
    })
  }) as unknown as LookupFunction

  beforeAll(async () => {
    server = createServer((_req, res) => { hits++; res.end('ok') })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    proxy = await startTestProxy({ hosts: { 'public.example': '127.0.0.1' } })
  })
  afterAll(async () => {
    await proxy.close()
    await new Promise((resolve) => server.close(resolve))
  })

  it('an operator\'s gateway goes through the proxy; a client\'s loopback address or a name that resolves to one never reaches it', async () => {
    const guard = new AddressGuard({ trusted: [origin], lookup })
    const http = new HttpClient({ timeoutMs: 2_000, guard, opaqueErrors: true, proxy: { http: proxy.url } })
    try {
      const ok = await http.request(`${origin}/trusted`, { gateway: origin })
      expect((await readBody(ok, 100, () => new Error('big'))).toString()).toBe('ok')
      expect(proxy.requests.map((r) => r.target)).toEqual([`${origin}/trusted`])
      for (const url of ['http://127.0.0.2:9/x', 'http://localhost:9/x', 'http://inside.example/x']) {
        const err = await http.request(url, { gateway: url }).then(() => undefined, (e: unknown) => e)
        expect(err).toBeInstanceOf(CidgetError)
        expect((err as CidgetError).code).toBe('CIDGET_ERR_ADDRESS_REFUSED')
      }
      expect(proxy.requests).toHaveLength(1)
      expect(hits).toBe(1)
    } finally {
      await http.close()
    }
  })

  it('a public name passes the guard and is handed to the proxy (which resolves it itself)', async () => {
    const guard = new AddressGuard({ trusted: [], lookup })
    const http = new HttpClient({ timeoutMs: 2_000, guard, opaqueErrors: true, proxy: { http: proxy.url } })
    try {
      const before = proxy.requests.length
      const port = new URL(origin).port
      const res = await http.request(`http://public.example:${port}/x`, { gateway: 'http://public.example' })
      expect((await readBody(res, 100, () => new Error('big'))).toString()).toBe('ok')
      expect(proxy.requests.slice(before)).toEqual([{ kind: 'forward', target: `http://public.example:${port}/x`, status: 200 }])
    } finally {
      await http.close()
    }
  })
})
