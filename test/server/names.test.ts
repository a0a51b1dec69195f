/** Names through the service's API: accepted wherever targets are, resolved when the download starts, shown with what they resolved to. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { buildServer } from '../../src/server/app.js'
import type { DownloadRecord } from '../../src/core/types.js'
import { addDirectory, seededBytes, startTestDnsResolver, type TestDnsResolver } from '../../src/testing/index.js'
import { world, sha256, KiB, type World } from '../helpers.js'

const TOKEN = 'test-token-0123456789'
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

describe('the API and names', () => {
  let w: World
  let app: FastifyInstance
  let dns: TestDnsResolver
  let name: string
  let root: string
  const data = seededBytes(200 * KiB, 9)

  beforeAll(async () => {
    w = await world({ size: 4 * KiB })
    dns = await startTestDnsResolver()
    root = (await addDirectory(w.blocks, [{ path: 'f.bin', content: data }])).toString()
    const key = await generateKeyPair('Ed25519')
    name = peerIdFromPrivateKey(key).toCID().toString(base36)
    w.gateways[0]!.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${root}`, 4, 3_600_000)))
    dns.setTxt('_dnslink.site.example', [`dnslink=/ipns/${name}`])
    const dl = await w.open({ now: () => Date.now(), routers: [], dnsResolvers: [`${dns.url}/dns-query`], nameSettleMs: 10 })
    app = await buildServer({ downloader: dl, dir: join(w.dir, 'downloads'), token: TOKEN })
  })
  afterAll(async () => {
    await app.close()
    await Promise.all([w.close(), dns.close()])
  })

  it('POST /api/downloads takes a DNSLink name; the record shows the name, then what it resolved to', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/downloads', headers: HEADERS, payload: { target: '/ipns/site.example/f.bin', gateways: [w.gateways[0]!.url] } })
    expect(res.statusCode, res.body).toBe(201)
    const added = res.json<DownloadRecord>()
    expect(added).toMatchObject({ name: '/ipns/site.example/f.bin', output: join(w.dir, 'downloads', 'f.bin') })
    let rec = added
    for (let i = 0; i < 250 && rec.status !== 'success' && rec.status !== 'failed'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      rec = (await app.inject({ url: `/api/downloads/${added.id}`, headers: { authorization: HEADERS.authorization } })).json<DownloadRecord>()
    }
    expect(rec).toMatchObject({ status: 'success', cid: root, path: '/f.bin', nameSequence: '4' })
    expect(sha256(await readFile(rec.output))).toBe(sha256(data))
  })

  it('refuses a target whose name is neither a key nor a domain with 400 and CIDGET_ERR_BAD_TARGET', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/downloads', headers: HEADERS, payload: { target: 'ipns://not_a_name' } })
    expect(res.statusCode).toBe(400)
    expect(res.json<{ error: { code: string } }>().error.code).toBe('CIDGET_ERR_BAD_TARGET')
  })
})
