import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { createIPNSRecord, createIPNSRecordWithExpiration, marshalIPNSRecord, unmarshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { HttpClient } from '../../src/gateways/http.js'
import { NameResolver, parseIpnsName, fromSubdomainLabel, type NameResolverInit } from '../../src/names/index.js'
import { CidgetError } from '../../src/core/errors.js'
import { MemoryBlocks, startTestDnsResolver, startTestGateway, startTestRouter, type TestDnsResolver, type TestGateway, type TestRouter } from '../../src/testing/index.js'

const CID_A = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const CID_B = 'bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su'
const HOUR = 3_600_000

async function keyName (type: 'Ed25519' | 'secp256k1'): Promise<{ key: PrivateKey, name: string }> {
  const key = await generateKeyPair(type)
  return { key, name: peerIdFromPrivateKey(key).toCID().toString(base36) }
}

async function record (key: PrivateKey, value: string, seq: number, lifetime = HOUR): Promise<Uint8Array> {
  return marshalIPNSRecord(await createIPNSRecord(key, value, seq, lifetime))
}

/** Rejects with a CidgetError whose code is returned. */
async function codeOf (p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    if (err instanceof CidgetError) return err.code
    throw err
  }
  throw new Error('resolved')
}

describe('names: IPNS records and DNSLink, verified, from real servers on loopback', () => {
  const http = new HttpClient({ timeoutMs: 5000 })
  let g1: TestGateway
  let g2: TestGateway
  let router: TestRouter
  let dns: TestDnsResolver
  let ed: { key: PrivateKey, name: string }
  let secp: { key: PrivateKey, name: string }
  let other: { key: PrivateKey, name: string }

  beforeAll(async () => {
    const blocks = new MemoryBlocks()
    ;[g1, g2, router, dns] = await Promise.all([startTestGateway({ blocks }), startTestGateway({ blocks }), startTestRouter(), startTestDnsResolver()])
    ;[ed, secp, other] = await Promise.all([keyName('Ed25519'), keyName('secp256k1'), keyName('Ed25519')])
  })
  afterAll(async () => {
    await Promise.all([g1.close(), g2.close(), router.close(), dns.close(), http.close()])
  })

  function resolver (over: Partial<NameResolverInit> = {}): { r: NameResolver, problems: Array<[string, string]> } {
    const problems: Array<[string, string]> = []
    const r = new NameResolver({
      http,
      gateways: [g1.url, g2.url],
      routers: [router.url],
      dnsResolvers: [`${dns.url}/dns-query`],
      settleMs: 50,
      onProblem: (source, err) => problems.push([source, err.code]),
      ...over
    })
    return { r, problems }
  }

  function clear (name: string): void {
    for (const s of [g1, g2, router]) s.setIpnsRecord(name, undefined)
  }

  it('resolves an Ed25519 and a secp256k1 name from a gateway record, path included, and records sequence and validity', async () => {
    for (const k of [ed, secp]) {
      g1.setIpnsRecord(k.name, await record(k.key, `/ipfs/${CID_A}/sub`, 7))
      const { r, problems } = resolver({ gateways: [g1.url], routers: [] })
      const res = await r.resolve(k.name, '/file.bin')
      expect(res).toMatchObject({ name: `/ipns/${k.name}`, cid: CID_A, path: '/sub/file.bin', sequence: '7' })
      expect(res.validUntil).toBeGreaterThan(Date.now() + HOUR - 60_000)
      expect(problems).toEqual([])
      const asked = g1.requests.at(-1)
      expect(asked?.url).toBe(`/ipns/${k.name}?format=ipns-record`)
      expect(asked?.format).toBe('ipns-record')
      clear(k.name)
    }
  })

  it('takes the highest sequence among gateways and routers; the peer-ID spelling of the name is the same name', async () => {
    g1.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 3))
    g2.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_B}`, 5))
    router.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 4))
    const { r } = resolver()
    expect((await r.resolve(ed.name)).cid).toBe(CID_B)
    expect(router.requests.at(-1)).toMatchObject({ url: `/routing/v1/ipns/${ed.name}`, accept: 'application/vnd.ipfs.ipns-record' })
    // the router alone has the newest
    router.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 9))
    const peer = peerIdFromPrivateKey(ed.key).toString()
    const res = await resolver().r.resolve(peer)
    expect(res).toMatchObject({ name: `/ipns/${ed.name}`, cid: CID_A, sequence: '9' })
    clear(ed.name)
  })

  it('among equal sequences takes the longest validity', async () => {
    g1.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 2, HOUR))
    g2.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_B}`, 2, 5 * HOUR))
    expect((await resolver({ routers: [] }).r.resolve(ed.name)).cid).toBe(CID_B)
    clear(ed.name)
  })

  it('refuses each invalid record with its code, costs its source a mark, and uses the valid one', async () => {
    const good = await record(ed.key, `/ipfs/${CID_A}`, 1)
    const expired = marshalIPNSRecord(await createIPNSRecordWithExpiration(ed.key, `/ipfs/${CID_B}`, 50, new Date(Date.now() - HOUR).toISOString().replace('Z', '000000Z')))
    // a bad signature: one byte of the V2 signature flipped
    const signed = unmarshalIPNSRecord(await record(ed.key, `/ipfs/${CID_B}`, 60))
    const sig = Uint8Array.from(signed.signatureV2)
    sig[10] = (sig[10] ?? 0) ^ 1
    const badSig = marshalIPNSRecord({ ...signed, signatureV2: sig })
    // V1 value disagreeing with the signed CBOR data
    const v1 = unmarshalIPNSRecord(await record(ed.key, `/ipfs/${CID_A}`, 70))
    const disagree = marshalIPNSRecord({ ...v1, value: `/ipfs/${CID_B}` })
    // signed by another key
    const foreign = await record(other.key, `/ipfs/${CID_B}`, 80)
    // over 10 KiB
    const huge = await record(ed.key, `/ipfs/${CID_B}/${'x'.repeat(11 * 1024)}`, 90)
    expect(huge.byteLength).toBeGreaterThan(10 * 1024)

    for (const bad of [expired, badSig, disagree, foreign, huge]) {
      g1.setIpnsRecord(ed.name, good)
      g2.setIpnsRecord(ed.name, bad)
      const { r, problems } = resolver({ routers: [] })
      const res = await r.resolve(ed.name)
      expect(res.cid).toBe(CID_A)
      expect(res.sequence).toBe('1')
      expect(problems).toEqual([[g2.url, 'CIDGET_ERR_IPNS_RECORD_INVALID']])
      // alone, it is no answer
      g1.setIpnsRecord(ed.name, undefined)
      const err = await resolver({ routers: [] }).r.resolve(ed.name).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(CidgetError)
      expect((err as CidgetError).code).toBe('CIDGET_ERR_NAME_NOT_RESOLVED')
      expect((err as CidgetError).message).toContain(g2.url)
    }
    clear(ed.name)
  })

  it('a gateway that answers something other than a record, or an error status, is a mark, not a failure', async () => {
    router.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 1))
    g1.addFault({ fault: { type: 'status', status: 500 }, times: 1 })
    const { r, problems } = resolver()
    expect((await r.resolve(ed.name)).cid).toBe(CID_A)
    expect(problems).toEqual(expect.arrayContaining([[g1.url, 'CIDGET_ERR_HTTP_STATUS'], [g2.url, 'CIDGET_ERR_NOT_FOUND']]))
    router.setFault({ type: 'body', body: '<html>not a record</html>', contentType: 'text/html' })
    expect(await codeOf(resolver().r.resolve(ed.name))).toBe('CIDGET_ERR_NAME_NOT_RESOLVED')
    router.setFault(undefined)
    clear(ed.name)
  })

  it('does not wait for a slow source once a valid record is in and the settle time passed', async () => {
    g1.setIpnsRecord(ed.name, await record(ed.key, `/ipfs/${CID_A}`, 1))
    router.setFault({ type: 'latency', ms: 10_000 })
    const started = Date.now()
    expect((await resolver().r.resolve(ed.name)).cid).toBe(CID_A)
    expect(Date.now() - started).toBeLessThan(5000)
    router.setFault(undefined)
    clear(ed.name)
  })

  it('DNSLink over DNS-over-HTTPS: a plain link, a path, the legacy TXT on the domain itself', async () => {
    dns.setTxt('_dnslink.example.org', ['v=spf1 -all', `dnslink=/ipfs/${CID_A}/site`])
    const res = await resolver().r.resolve('example.org', '/index.html')
    expect(res).toMatchObject({ name: '/ipns/example.org', cid: CID_A, path: '/site/index.html', sequence: null, validity: null })
    expect(dns.requests.at(-1)).toMatchObject({ url: '/dns-query?name=_dnslink.example.org&type=TXT', accept: 'application/dns-json' })
    dns.setTxt('legacy.example', [`dnslink=/ipfs/${CID_B}`])
    expect((await resolver().r.resolve('Legacy.Example.')).cid).toBe(CID_B)
  })

  it('DNSLink chained to an IPNS name, and the IPNS record chained to another domain', async () => {
    dns.setTxt('_dnslink.chain.example', [`dnslink=/ipns/${ed.name}/v2`])
    g1.setIpnsRecord(ed.name, await record(ed.key, '/ipns/final.example/data', 4))
    dns.setTxt('_dnslink.final.example', [`dnslink=/ipfs/${CID_B}`])
    const res = await resolver().r.resolve('chain.example', '/x.bin')
    expect(res).toMatchObject({ cid: CID_B, path: '/data/v2/x.bin', sequence: '4' })
    expect(res.chain).toEqual(['/ipns/chain.example/x.bin', `/ipns/${ed.name}/v2/x.bin`, '/ipns/final.example/data/v2/x.bin', `/ipfs/${CID_B}/data/v2/x.bin`])
    clear(ed.name)
  })

  it('refuses a loop and a chain too long with CIDGET_ERR_NAME_LOOP', async () => {
    dns.setTxt('_dnslink.a.example', ['dnslink=/ipns/b.example'])
    dns.setTxt('_dnslink.b.example', ['dnslink=/ipns/a.example/x'])
    const err = await resolver().r.resolve('a.example').catch((e: unknown) => e) as CidgetError
    expect(err.code).toBe('CIDGET_ERR_NAME_LOOP')
    expect(err.message).toContain('/ipns/a.example → /ipns/b.example → /ipns/a.example/x')
    for (let i = 0; i < 5; i++) dns.setTxt(`_dnslink.n${i}.example`, [`dnslink=/ipns/n${i + 1}.example`])
    dns.setTxt('_dnslink.n5.example', [`dnslink=/ipfs/${CID_A}`])
    expect((await resolver().r.resolve('n0.example')).cid).toBe(CID_A)
    expect(await codeOf(resolver({ maxDepth: 4 }).r.resolve('n0.example'))).toBe('CIDGET_ERR_NAME_LOOP')
  })

  it('NXDOMAIN, no DNSLink, a malformed answer and an unreachable resolver are clear errors; the next resolver is asked after a failure', async () => {
    const nx = await resolver().r.resolve('nowhere.example').catch((e: unknown) => e) as CidgetError
    expect(nx.code).toBe('CIDGET_ERR_NAME_NOT_RESOLVED')
    expect(nx.message).toContain('nowhere.example has no DNSLink')
    dns.setTxt('_dnslink.bad.example', ['dnslink=not-a-path'])
    expect(await codeOf(resolver().r.resolve('bad.example'))).toBe('CIDGET_ERR_NAME_NOT_RESOLVED')

    const broken = await startTestDnsResolver()
    try {
      dns.setTxt('_dnslink.ok.example', [`dnslink=/ipfs/${CID_A}`])
      for (const body of ['{"Status": 0, "Answer": {"no": "list"}}', 'not json', '{"Answer": []}']) {
        broken.setFault({ type: 'body', body, contentType: 'application/dns-json' })
        const { r, problems } = resolver({ dnsResolvers: [`${broken.url}/dns-query`] })
        const err = await r.resolve('ok.example').catch((e: unknown) => e) as CidgetError
        expect(err.code).toBe('CIDGET_ERR_NAME_NOT_RESOLVED')
        expect(problems).toEqual([[`${broken.url}/dns-query`, 'CIDGET_ERR_NAME_NOT_RESOLVED']])
        // the second resolver answers
        const both = resolver({ dnsResolvers: [`${broken.url}/dns-query`, `${dns.url}/dns-query`] })
        expect((await both.r.resolve('ok.example')).cid).toBe(CID_A)
      }
      broken.setFault({ type: 'status', status: 503 })
      expect((await resolver({ dnsResolvers: [`${broken.url}/dns-query`, `${dns.url}/dns-query`] }).r.resolve('ok.example')).cid).toBe(CID_A)
    } finally {
      await broken.close()
    }
  })

  it('parses names: keys in either spelling, domains, subdomain labels; refuses content CIDs and junk', () => {
    const peer = peerIdFromPrivateKey(ed.key).toString()
    expect(parseIpnsName(peer)).toMatchObject({ kind: 'key', name: ed.name })
    expect(parseIpnsName(ed.name)).toMatchObject({ kind: 'key', name: ed.name })
    expect(parseIpnsName('Docs.IPFS.tech')).toEqual({ kind: 'dnslink', name: 'docs.ipfs.tech' })
    expect(fromSubdomainLabel('en-wikipedia--on--ipfs-org')).toBe('en.wikipedia-on-ipfs.org')
    expect(fromSubdomainLabel(ed.name)).toBe(ed.name)
    for (const junk of [CID_A, 'localhost', '127.0.0.1', 'a..b', '-x.org', 'x'.repeat(64) + '.org', '']) {
      expect(() => parseIpnsName(junk), junk).toThrow(CidgetError)
    }
  })
})
