/**
 * Issue 14, item 5: a service does not fetch from this machine's network what
 * its clients name. Real servers on 127.0.0.1 count every connection they get,
 * so "refused" means nothing crossed the wire; names resolve through an
 * injected lookup, so no DNS query leaves the machine.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import type { LookupAddress } from 'node:dns'
import type { LookupFunction } from 'node:net'
import { join } from 'node:path'
import { AddressGuard, isLocalAddress } from '../../src/gateways/address.js'
import { HttpClient } from '../../src/gateways/http.js'
import { CidgetError } from '../../src/core/errors.js'
import { FINAL_STATUSES, type DownloadRecord } from '../../src/core/types.js'
import { buildServer } from '../../src/server/app.js'
import { world, KiB, type World } from '../helpers.js'

/** A lookup over a fixed table: no query leaves the machine. */
function fakeLookup (table: Record<string, string[]>): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => {
    const list = table[hostname] ?? table[hostname.replace(/^[^.]+\.ipfs\./, '*.ipfs.')]
    if (list === undefined) {
      process.nextTick(() => { callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', 4) })
      return
    }
    const all = list.map(address => ({ address, family: address.includes(':') ? 6 : 4 }))
    process.nextTick(() => {
      if (options.all === true) callback(null, all)
      else callback(null, all[0]!.address, all[0]!.family)
    })
  }) as unknown as LookupFunction
}

/** A real HTTP server on 127.0.0.1 that counts connections and answers with `handler`. */
async function countingServer (handler: (url: string, port: number) => { status: number, location?: string, body?: string }): Promise<{ port: number, url: string, connections: () => number, close: () => Promise<void> }> {
  let connections = 0
  let port = 0
  const server: Server = createServer((req, res) => {
    const a = handler(req.url ?? '/', port)
    res.writeHead(a.status, a.location === undefined ? {} : { location: a.location })
    res.end(a.body ?? '')
  })
  server.on('connection', () => { connections++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  port = addr.port
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => { resolve() })) }
  }
}

async function refusal (p: Promise<unknown>): Promise<CidgetError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CidgetError)
  return err as CidgetError
}

describe('isLocalAddress', () => {
  it('knows loopback, private, link-local and other non-public ranges, in both families and IPv4 inside IPv6', () => {
    for (const ip of ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '100.64.0.1',
      '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe',
      '64:ff9b::10.0.0.1', '2002:7f00:1::1', 'ff02::1']) {
      expect(isLocalAddress(ip), ip).toBe(true)
    }
    for (const ip of ['1.1.1.1', '8.8.8.8', '172.32.0.1', '192.169.0.1', '169.255.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '2001:4860::8888']) {
      expect(isLocalAddress(ip), ip).toBe(false)
    }
  })
})

describe('AddressGuard', () => {
  it('trusts the operator\'s gateways, and subdomains of a configured host name on the same port; nothing else', () => {
    const guard = new AddressGuard({ trusted: ['http://127.0.0.1:8080', 'https://gw.internal', 'http://localhost:8081/prefix'] })
    expect(guard.trusts('http:', '127.0.0.1', '8080')).toBe(true)
    expect(guard.trusts('http:', '127.0.0.1', '8081')).toBe(false)
    expect(guard.trusts('http:', 'evil.127.0.0.1', '8080')).toBe(false)
    expect(guard.trusts('https:', 'gw.internal', '')).toBe(true)
    expect(guard.trusts('https:', 'bafy.ipfs.gw.internal', 443)).toBe(true)
    expect(guard.trusts('https:', 'gw.internal.evil.example', 443)).toBe(false)
    expect(guard.trusts('http:', 'bafy.ipfs.localhost', '8081')).toBe(true)
    expect(guard.trusts('http:', 'localhost', '8082')).toBe(false)
  })

  it('refuses a visibly local URL at once, and a name by what it resolves to', async () => {
    const guard = new AddressGuard({
      trusted: [],
      lookup: fakeLookup({ 'dweb.link': ['209.94.90.1'], '*.ipfs.dweb.link': ['209.94.90.2', '2001:4860::1'], 'inside.example': ['10.0.0.7'], 'mixed.example': ['93.184.215.14', '127.0.0.1'] })
    })
    for (const url of ['http://127.0.0.1:9', 'http://[::1]:8080', 'http://localhost', 'http://a.localhost', 'http://169.254.169.254', 'http://[::ffff:169.254.169.254]', 'http://0x7f000001', 'http://2130706433', 'http://[::127.0.0.1]', 'http://[::ffff:0:127.0.0.1]']) {
      expect(() => { guard.checkUrl(url) }, url).toThrow(expect.objectContaining({ code: 'CIDGET_ERR_ADDRESS_REFUSED' }))
    }
    guard.checkUrl('https://dweb.link')
    const resolve = async (name: string): Promise<LookupAddress[]> => await new Promise((resolve, reject) => {
      guard.lookup(name, { all: true }, (err, addresses) => { if (err !== null) reject(err); else resolve(addresses as unknown as LookupAddress[]) })
    })
    // the subdomain a gateway redirects to is checked by its own addresses: public, so it passes
    expect(guard.check('https:', 'bafybeigdyrzt.ipfs.dweb.link', '')).toEqual({ guarded: true })
    expect((await resolve('bafybeigdyrzt.ipfs.dweb.link')).map(a => a.address)).toEqual(['209.94.90.2', '2001:4860::1'])
    await expect(resolve('inside.example')).rejects.toMatchObject({ code: 'CIDGET_ERR_ADDRESS_REFUSED' })
    await expect(resolve('mixed.example')).rejects.toMatchObject({ code: 'CIDGET_ERR_ADDRESS_REFUSED' })
    const err = await resolve('inside.example').catch((e: Error) => e)
    expect((err as Error).message).not.toContain('10.0.0.7')
  })

  it('allowLocal lets everything through', () => {
    const guard = new AddressGuard({ trusted: [], allowLocal: true })
    guard.checkUrl('http://127.0.0.1:9')
    expect(guard.check('http:', '169.254.169.254', 80)).toEqual({ guarded: false })
  })
})

describe('HttpClient with a guard: nothing crosses the wire to a refused address', () => {
  let target: Awaited<ReturnType<typeof countingServer>>
  beforeAll(async () => {
    target = await countingServer(() => ({ status: 200, body: 'secret' }))
  })
  afterAll(async () => { await target.close() })

  it('refuses an IP literal and a name resolving to 127.0.0.1 before connecting', async () => {
    const http = new HttpClient({ timeoutMs: 2_000, guard: new AddressGuard({ trusted: [], lookup: fakeLookup({ 'gw.example': ['127.0.0.1'] }) }), opaqueErrors: true })
    try {
      for (const url of [`${target.url}/ipfs/x`, `http://gw.example:${target.port}/ipfs/x`, `http://localhost:${target.port}/`]) {
        const err = await refusal(http.request(url, { gateway: url }))
        expect(err.code, url).toBe('CIDGET_ERR_ADDRESS_REFUSED')
      }
      expect(target.connections()).toBe(0)
    } finally {
      await http.close()
    }
  })

  it('a redirect to 127.0.0.1 or 169.254.169.254 is refused, also from a trusted gateway; a trusted host\'s subdomain redirect works', async () => {
    const redirector = await countingServer((url, port) => {
      if (url === '/to-local') return { status: 302, location: `${target.url}/ipfs/x` }
      if (url === '/to-metadata') return { status: 302, location: 'http://169.254.169.254/latest/meta-data/' }
      if (url === '/to-name') return { status: 301, location: `http://inside.example:${target.port}/` }
      if (url === '/ipfs/bafy') return { status: 301, location: `http://bafy.ipfs.gw.test:${port}/` }
      return { status: 200, body: 'subdomain answer' }
    })
    const lookup = fakeLookup({ 'gw.test': ['127.0.0.1'], '*.ipfs.gw.test': ['127.0.0.1'], 'inside.example': ['127.0.0.1'] })
    const http = new HttpClient({ timeoutMs: 2_000, guard: new AddressGuard({ trusted: [`http://gw.test:${redirector.port}`], lookup }), opaqueErrors: true })
    try {
      for (const path of ['/to-local', '/to-metadata', '/to-name']) {
        const err = await refusal(http.request(`http://gw.test:${redirector.port}${path}`, { gateway: 'http://gw.test' }))
        expect(err.code, path).toBe('CIDGET_ERR_ADDRESS_REFUSED')
      }
      expect(target.connections()).toBe(0)
      // the operator's gateway sends a subdomain redirect (dweb.link/ipfs/CID → CID.ipfs.dweb.link): followed
      const res = await http.request(`http://gw.test:${redirector.port}/ipfs/bafy`, { gateway: 'http://gw.test' })
      expect(res.status).toBe(200)
      let text = ''
      for await (const chunk of res.body) text += Buffer.from(chunk).toString()
      expect(text).toBe('subdomain answer')
    } finally {
      await http.close()
      await redirector.close()
    }
  })

  it('opaque errors: a closed port reads "the connection failed", with no address or system code', async () => {
    const closedPort = await countingServer(() => ({ status: 200 }))
    await closedPort.close()
    const http = new HttpClient({ timeoutMs: 2_000, guard: new AddressGuard({ trusted: [], allowLocal: true }), opaqueErrors: true })
    try {
      const err = await refusal(http.request(`${closedPort.url}/`, { gateway: 'http://gw' }))
      expect(err.code).toBe('CIDGET_ERR_NETWORK')
      expect(err.message).toBe('http://gw: the connection failed')
    } finally {
      await http.close()
    }
  })
})

describe('the service (issue 14, item 5)', () => {
  let w: World
  let local: Awaited<ReturnType<typeof countingServer>>
  beforeAll(async () => {
    w = await world({ size: 64 * KiB })
    local = await countingServer(() => ({ status: 200, body: 'internal' }))
  })
  afterAll(async () => {
    await local.close()
    await w.close()
  })

  it('refuses client-named gateways on local addresses (body gateways, a gateway-URL target, a queued item) with 400, nothing sent; the operator\'s gateway works', async () => {
    const dl = await w.open({ service: { lookup: fakeLookup({ 'gw.example': ['127.0.0.1'] }) } })
    const app = await buildServer({ downloader: dl, dir: join(w.dir, 'svc'), token: null })
    // final records by id, from the status events (listened to before any download starts)
    const ended = new Map<number, (rec: DownloadRecord) => void>()
    const seen = new Map<number, DownloadRecord>()
    dl.on('cidget:download:status', (e) => {
      if (!FINAL_STATUSES.includes(e.status)) return
      void dl.get(e.id).then(rec => {
        if (rec === undefined) return
        seen.set(e.id, rec)
        ended.get(e.id)?.(rec)
      })
    })
    const final = async (id: number): Promise<DownloadRecord> => seen.get(id) ?? await new Promise(resolve => { ended.set(id, resolve) })
    const post = async (body: unknown): Promise<{ status: number, json: { error?: { code: string, message: string }, id?: number } }> => {
      const r = await app.inject({ method: 'POST', url: '/api/downloads', headers: { host: '127.0.0.1' }, payload: body as Record<string, unknown> })
      return { status: r.statusCode, json: r.json() }
    }
    try {
      for (const body of [
        { target: w.cid, gateways: [local.url] },
        { target: w.cid, gateways: [`http://[::1]:${local.port}`, 'https://ipfs.io'] },
        { target: w.cid, gateways: ['http://169.254.169.254'] },
        { target: `http://localhost:${local.port}/ipfs/${w.cid}` },
        { target: `${local.url}/ipfs/${w.cid}` }
      ]) {
        const r = await post(body)
        expect(r.status, JSON.stringify(body)).toBe(400)
        expect(r.json.error?.code).toBe('CIDGET_ERR_ADDRESS_REFUSED')
      }
      await expect(dl.enqueue([{ target: w.cid, output: 'q.bin', gateways: ['http://10.0.0.1'] }], { dir: join(w.dir, 'svc') }))
        .rejects.toMatchObject({ code: 'CIDGET_ERR_ADDRESS_REFUSED' })

      // a name that resolves to 127.0.0.1 is refused as it connects: the download fails without reaching it or naming the address
      const viaName = await post({ target: w.cid, output: 'name.bin', mode: 'path', gateways: [`http://gw.example:${local.port}`] })
      expect(viaName.status).toBe(201)
      const done = await final(viaName.json.id!)
      expect(done.status).toBe('failed')
      expect(done.errorCode).toBe('CIDGET_ERR_ADDRESS_REFUSED')
      expect(done.error).not.toMatch(/127\.0\.0\.1|ECONNREFUSED/)
      expect(local.connections()).toBe(0)

      // the operator's (local) gateway is trusted as configured
      const ok = await post({ target: w.cid, output: 'ok.bin' })
      expect(ok.status).toBe(201)
      expect((await final(ok.json.id!)).status).toBe('success')
    } finally {
      await app.close()
      await dl.close()
    }
  })

  it('with allowLocal a client may name a local gateway', async () => {
    const dl = await w.open({ service: { allowLocal: true } })
    try {
      const job = await dl.add(w.cid, { output: join(w.dir, 'allowed.bin'), gateways: [w.gateways[0]!.url] })
      expect((await job.done).status).toBe('success')
    } finally {
      await dl.close()
    }
  })
})
