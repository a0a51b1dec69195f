/** `cidget get` of /ipns/ names through the CLI: keys and DNSLink, from test servers on loopback only. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { MemoryBlocks, addDirectory, seededBytes, startTestDnsResolver, startTestGateway, startTestRouter, type TestDnsResolver, type TestGateway, type TestRouter } from '../../src/testing/index.js'
import { runCli, lastRecord, sha256, KiB } from '../helpers.js'

describe('cidget get NAME', () => {
  let gw: TestGateway
  let router: TestRouter
  let dns: TestDnsResolver
  let dir: string
  let key: PrivateKey
  let name: string
  let env: NodeJS.ProcessEnv
  const data = seededBytes(300 * KiB, 3)
  let root: string

  beforeAll(async () => {
    const blocks = new MemoryBlocks()
    root = (await addDirectory(blocks, [{ path: 'v1/data.bin', content: data }])).toString()
    ;[gw, router, dns] = await Promise.all([startTestGateway({ blocks }), startTestRouter(), startTestDnsResolver()])
    key = await generateKeyPair('Ed25519')
    name = peerIdFromPrivateKey(key).toCID().toString(base36)
    router.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${root}/v1`, 12, 3_600_000)))
    dns.setTxt('_dnslink.data.example', [`dnslink=/ipns/${name}`])
    dir = await mkdtemp(join(tmpdir(), 'cidget-names-'))
    // the routers and resolvers of the environment: a run never reaches the public defaults
    env = { HOME: dir, CIDGET_STATE: join(dir, 'state.db'), CIDGET_ROUTERS: router.url, CIDGET_DNS_RESOLVERS: `${dns.url}/dns-query`, CIDGET_GATEWAYS: gw.url }
  })
  afterAll(async () => {
    await Promise.all([gw.close(), router.close(), dns.close()])
    await rm(dir, { recursive: true, force: true })
  })

  it('a key: the record from the router, the file verified, the resolution in the JSON record', async () => {
    const out = join(dir, 'k.bin')
    const r = await runCli(['get', `/ipns/${name}/data.bin`, '-o', out, '--json'], { env })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(lastRecord(r.stdout)).toMatchObject({ status: 'success', cid: root, path: '/v1/data.bin', name: `/ipns/${name}/data.bin`, nameSequence: '12' })
    expect(sha256(await readFile(out))).toBe(sha256(data))
    expect(router.requests.map((q) => q.url)).toContain(`/routing/v1/ipns/${name}`)
  })

  it('a DNSLink domain through --dns-resolver and --router flags, the subdomain form of a gateway URL', async () => {
    const out = join(dir, 'd.bin')
    const r = await runCli(['get', 'https://data-example.ipns.localhost:1/data.bin', '-o', out, '--json', '-g', gw.url,
      '--router', router.url, '--dns-resolver', `${dns.url}/dns-query`], { env: { ...env, CIDGET_ROUTERS: 'http://127.0.0.1:1', CIDGET_DNS_RESOLVERS: 'http://127.0.0.1:1' } })
    expect(r.code).toBe(0)
    expect(lastRecord(r.stdout)).toMatchObject({ status: 'success', cid: root, name: '/ipns/data.example/data.bin' })
    expect(sha256(await readFile(out))).toBe(sha256(data))
  })

  it('a name that is neither a key nor a domain: exit 2, one line, no stack trace', async () => {
    const r = await runCli(['get', '/ipns/localhost', '-o', join(dir, 'x')], { env })
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toContain('CIDGET_ERR_BAD_TARGET')
    expect(r.stderr).not.toMatch(/\bat .*\.m?js:\d+/)
  })

  it('a domain without DNSLink: the download fails with CIDGET_ERR_NAME_NOT_RESOLVED, saying what the resolver said', async () => {
    const r = await runCli(['get', '/ipns/nothing.example', '-o', join(dir, 'n'), '--json'], { env })
    expect(r.code).not.toBe(0)
    const rec = lastRecord(r.stdout)
    expect(rec).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_NAME_NOT_RESOLVED' })
    expect(rec.error).toContain('nothing.example has no DNSLink')
  })
})
