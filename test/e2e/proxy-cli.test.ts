/**
 * `cidget get` through an HTTP proxy (the test proxy on 127.0.0.1): the
 * environment's variables as curl reads them, NO_PROXY, --proxy over the
 * environment, credentials in the URL, a 407, and https gateways through
 * CONNECT (a gateway behind TLS with the certificate in test/fixtures/tls,
 * trusted through NODE_EXTRA_CA_CERTS); IPFS_GATEWAY in front of the list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { createServer as createHttpsServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { MemoryBlocks, addFile, seededBytes, startTestDnsResolver, startTestGateway, startTestProxy, type TestGateway, type TestProxy } from '../../src/testing/index.js'
import { runCli, lastRecord, sha256, closedUrl, KiB } from '../helpers.js'

const TLS = new URL('../fixtures/tls/', import.meta.url).pathname

/** An https front for `gateway` (each request passed on as it came), on 127.0.0.1. */
async function tlsFront (gateway: TestGateway): Promise<{ url: string, server: Server }> {
  const server = createHttpsServer({ key: readFileSync(join(TLS, 'key.pem')), cert: readFileSync(join(TLS, 'cert.pem')) }, (req, res) => {
    const target = new URL(gateway.url)
    const up = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    up.on('error', () => { res.destroy() })
    req.pipe(up)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

describe('cidget get through a proxy', () => {
  let gw: TestGateway
  let proxy: TestProxy
  let locked: TestProxy
  let front: { url: string, server: Server }
  let dir: string
  let cid: string
  let env: NodeJS.ProcessEnv
  const data = seededBytes(700 * KiB, 11)
  let n = 0
  const out = (): string => join(dir, `f${++n}.bin`)

  beforeAll(async () => {
    const blocks = new MemoryBlocks()
    cid = (await addFile(blocks, data)).toString()
    ;[gw, proxy, locked] = await Promise.all([startTestGateway({ blocks }), startTestProxy(), startTestProxy({ credentials: 'ann:s3cret!' })])
    front = await tlsFront(gw)
    dir = await mkdtemp(join(tmpdir(), 'cidget-proxy-'))
    env = { HOME: dir, CIDGET_STATE: join(dir, 'state.db'), CIDGET_ROUTERS: '' }
  })
  afterAll(async () => {
    front.server.closeAllConnections()
    await Promise.all([gw.close(), proxy.close(), locked.close(), new Promise((resolve) => front.server.close(resolve))])
    await rm(dir, { recursive: true, force: true })
  })

  it('http_proxy: every request to the gateway goes through the proxy, as absolute-URI requests', async () => {
    const before = gw.requests.length
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json'], { env: { ...env, http_proxy: proxy.url } })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const rec = lastRecord(r.stdout)
    expect(sha256(await readFile(rec.output))).toBe(sha256(data))
    const seen = gw.requests.length - before
    expect(seen).toBeGreaterThan(0)
    const through = proxy.requests.filter((q) => q.kind === 'forward' && q.target.startsWith(gw.url))
    expect(through.length).toBe(seen)
  })

  it('NO_PROXY: the gateway is reached directly', async () => {
    const before = proxy.requests.length
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json'], { env: { ...env, HTTP_PROXY: proxy.url, http_proxy: proxy.url, NO_PROXY: 'example.org,127.0.0.1' } })
    expect(r.code).toBe(0)
    expect(proxy.requests.slice(before)).toEqual([])
  })

  it('--proxy wins over the environment (whose proxy is down)', async () => {
    const before = proxy.requests.length
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json', '--proxy', proxy.url], { env: { ...env, http_proxy: await closedUrl() } })
    expect(r.code).toBe(0)
    expect(proxy.requests.length).toBeGreaterThan(before)
  })

  it('the config file\'s proxy wins over the environment; the flag over the config file', async () => {
    const before = proxy.requests.length
    const down = await closedUrl()
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json'], { env: { ...env, CIDGET_PROXY: proxy.url, http_proxy: down } })
    expect(r.code).toBe(0)
    expect(proxy.requests.length).toBeGreaterThan(before)
    const flag = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json', '--proxy', proxy.url], { env: { ...env, CIDGET_PROXY: down } })
    expect(flag.code).toBe(0)
  })

  it('a proxy that asks for credentials: a CONNECT answered 407 fails the download at once with CIDGET_ERR_PROXY_AUTH; the credentials in the URL pass', async () => {
    const target = out()
    const before = locked.requests.length
    const tls = { NODE_EXTRA_CA_CERTS: join(TLS, 'cert.pem') }
    const r = await runCli(['get', cid, '-o', target, '-g', front.url, '--proxy', locked.url], { env: { ...env, ...tls } })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/failed: The proxy asks for credentials \(HTTP 407\).*\[CIDGET_ERR_PROXY_AUTH\]/)
    expect(r.stderr).not.toContain('    at ')
    // not retried with backoffs: the first 407 ends the run (tunnels asked for at once before it count)
    const asked = locked.requests.slice(before)
    expect(asked.length).toBeGreaterThan(0)
    expect(asked.length).toBeLessThanOrEqual(8)
    expect(asked.every((q) => q.kind === 'connect' && q.status === 407)).toBe(true)
    const withUser = locked.url.replace('http://', 'http://ann:s3cret%21@')
    const ok = await runCli(['get', cid, '-o', target, '-g', front.url, '--json'], { env: { ...env, ...tls, HTTPS_PROXY: withUser } })
    expect(ok.code, ok.stderr).toBe(0)
    expect(sha256(await readFile(target))).toBe(sha256(data))
    expect(locked.requests.some((q) => q.kind === 'connect' && q.status === 200)).toBe(true)
  })

  it('a 407 to an http gateway\'s absolute-URI request counts against that gateway only (it may be the gateway\'s own)', async () => {
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--proxy', locked.url], { env: { ...env, CIDGET_MAX_RETRY_ATTEMPTS: '1', CIDGET_INITIAL_BACKOFF_MS: '10' } })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('HTTP 407 through the proxy')
    expect(r.stderr).not.toContain('CIDGET_ERR_PROXY_AUTH')
    // with the credentials, through the same proxy
    const ok = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--json', '--proxy', locked.url.replace('http://', 'http://ann:s3cret%21@')], { env })
    expect(ok.code, ok.stderr).toBe(0)
  })

  it('HTTPS_PROXY: an https gateway is reached through CONNECT tunnels', async () => {
    const before = proxy.requests.length
    const r = await runCli(['get', cid, '-o', out(), '-g', front.url, '--json'],
      { env: { ...env, HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: join(TLS, 'cert.pem') } })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const tunnels = proxy.requests.slice(before)
    expect(tunnels.length).toBeGreaterThan(0)
    expect(tunnels.every((q) => q.kind === 'connect' && q.target === front.url.slice('https://'.length) && q.status === 200)).toBe(true)
  })

  it('DNS-over-HTTPS answers go through the proxy too', async () => {
    const dns = await startTestDnsResolver({ txt: { '_dnslink.proxied.example': [`dnslink=/ipfs/${cid}`] } })
    try {
      const before = proxy.requests.length
      const r = await runCli(['get', '/ipns/proxied.example', '-o', out(), '-g', gw.url, '--json', '--dns-resolver', `${dns.url}/dns-query`], { env: { ...env, http_proxy: proxy.url } })
      expect(r.code).toBe(0)
      expect(lastRecord(r.stdout)).toMatchObject({ status: 'success', cid })
      expect(proxy.requests.slice(before).some((q) => q.target.startsWith(`${dns.url}/dns-query`))).toBe(true)
    } finally {
      await dns.close()
    }
  })

  it('a bad proxy URL is a usage error', async () => {
    const r = await runCli(['get', cid, '-o', out(), '-g', gw.url, '--proxy', 'socks5://127.0.0.1:1'], { env })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/proxy URL must be http/)
  })

  it('IPFS_GATEWAY comes first in the list; -g replaces the list, IPFS_GATEWAY included', async () => {
    const down = await closedUrl()
    const before = gw.requests.length
    // the configured list is a gateway that is down: the one of IPFS_GATEWAY serves
    const r = await runCli(['get', cid, '-o', out(), '--json'], { env: { ...env, CIDGET_GATEWAYS: down, IPFS_GATEWAY: gw.url } })
    expect(r.code).toBe(0)
    expect(lastRecord(r.stdout).gateways[0]).toBe(gw.url)
    expect(gw.requests.length).toBeGreaterThan(before)
    const replaced = await runCli(['get', cid, '-o', out(), '--json', '-g', gw.url], { env: { ...env, IPFS_GATEWAY: down } })
    expect(replaced.code).toBe(0)
    expect(lastRecord(replaced.stdout).gateways).toEqual([gw.url])
    const bad = await runCli(['get', cid, '-o', out()], { env: { ...env, IPFS_GATEWAY: 'not a url' } })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('IPFS_GATEWAY')
  })
})
