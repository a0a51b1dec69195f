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
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { SqliteStore } from '../../src/store/sqlite.js'
import { runCli, lastRecord, sha256, CLI, KiB } from '../helpers.js'

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

  it('an update killed with SIGKILL leaves the old tree whole; the next get finishes it', async () => {
    const files = (seed: number): Array<{ path: string, content: Uint8Array }> =>
      Array.from({ length: 16 }, (_, i) => ({ path: `t/f${i}.bin`, content: seededBytes(256 * KiB, seed * 100 + i) }))
    const v1 = files(1)
    const v2 = [...files(1).slice(0, 4), ...files(2).slice(4)]
    const key2 = await generateKeyPair('Ed25519')
    const name2 = peerIdFromPrivateKey(key2).toCID().toString(base36)
    const blocks = new MemoryBlocks()
    const r1 = (await addDirectory(blocks, v1)).toString()
    const r2 = (await addDirectory(blocks, v2)).toString()
    const g = await startTestGateway({ blocks })
    const state = join(dir, 'update.db')
    const e = { ...env, CIDGET_STATE: state, CIDGET_GATEWAYS: g.url, CIDGET_SYNC_INTERVAL_BYTES: String(256 * KiB) }
    const out = join(dir, 'tree')
    const treeOf = async (): Promise<Record<string, string>> => Object.fromEntries(await Promise.all(
      (await readdir(join(out, 't'))).sort().map(async (f) => [f, sha256(await readFile(join(out, 't', f)))])))
    const expected = (v: typeof v1): Record<string, string> => Object.fromEntries(v.map((f) => [f.path.slice(2), sha256(f.content)]))
    try {
      g.setIpnsRecord(name2, marshalIPNSRecord(await createIPNSRecord(key2, `/ipfs/${r1}`, 1, 3_600_000)))
      expect((await runCli(['get', `/ipns/${name2}`, '-o', out], { env: e })).code).toBe(0)
      expect(await treeOf()).toEqual(expected(v1))

      g.setIpnsRecord(name2, marshalIPNSRecord(await createIPNSRecord(key2, `/ipfs/${r2}`, 2, 3_600_000)))
      g.setMaxBytesPerSecond(512 * KiB)
      const child = spawn(process.execPath, [CLI, 'get', `/ipns/${name2}`, '-o', out, '-q'], { env: { ...process.env, ...e }, stdio: 'ignore' })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      const store = SqliteStore.open(state)
      try {
        for (let i = 0; i < 500 && ((await store.getDownload(2))?.currentSize ?? 0) <= 4 * 256 * KiB; i++) await new Promise((resolve) => setTimeout(resolve, 20))
        expect((await store.getDownload(2))?.updateOf).toBe(1)
      } finally {
        await store.close()
      }
      child.kill('SIGKILL')
      await exited
      // the old version, whole, at the output
      expect(await treeOf()).toEqual(expected(v1))

      g.setMaxBytesPerSecond(undefined)
      const r = await runCli(['get', `/ipns/${name2}`, '-o', out, '--json'], { env: e })
      expect(r.code).toBe(0)
      expect(lastRecord(r.stdout)).toMatchObject({ id: 2, status: 'success', cid: r2, updateOf: 1, updateReport: { keptFiles: 4, removedCount: 0 } })
      expect(await treeOf()).toEqual(expected(v2))
      expect((await readdir(dir)).filter((f) => f.startsWith('tree'))).toEqual(['tree'])
      const human = await runCli(['status', '2'], { env: e })
      expect(human.stdout).toContain(`name:      /ipns/${name2}`)
    } finally {
      await g.close()
    }
  })
})
