/** Downloads of /ipns/ names: resolved when a run starts, recorded, resumed on the same CID, checked again when done. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { addDirectory, addFile, seededBytes, startTestDnsResolver, startTestRouter, type TestDnsResolver, type TestRouter } from '../../src/testing/index.js'
import type { ResolvedEvent } from '../../src/core/events.js'
import { KiB, MiB, progressReaches, sha256, world, type World } from '../helpers.js'

describe('downloads of /ipns/ names', () => {
  let w: World
  let router: TestRouter
  let dns: TestDnsResolver
  let key: PrivateKey
  let name: string
  let v1: Uint8Array
  let v2: Uint8Array
  let cid1: string
  let cid2: string

  async function publish (value: string, seq: number): Promise<void> {
    w.gateways[0]?.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key, value, seq, 3_600_000)))
  }

  beforeEach(async () => {
    w = await world({ size: 4 * KiB })
    ;[router, dns] = await Promise.all([startTestRouter(), startTestDnsResolver()])
    key = await generateKeyPair('Ed25519')
    name = peerIdFromPrivateKey(key).toCID().toString(base36)
    v1 = seededBytes(2 * MiB, 1)
    v2 = seededBytes(2 * MiB, 2)
    cid1 = (await addDirectory(w.blocks, [{ path: 'data/model.bin', content: v1 }])).toString()
    cid2 = (await addDirectory(w.blocks, [{ path: 'data/model.bin', content: v2 }])).toString()
  })
  afterEach(async () => {
    await Promise.all([w.close(), router.close(), dns.close()])
  })

  function open (): ReturnType<World['open']> {
    // the real clock: the fake one's heartbeats race ahead of the leases under load
    return w.open({ routers: [router.url], dnsResolvers: [`${dns.url}/dns-query`], nameSettleMs: 20, now: Date.now, sleep: undefined })
  }

  it('resolves a key through its IPNS record, fetches the path after it, and records name, CID, sequence and validity', async () => {
    await publish(`/ipfs/${cid1}/data`, 3)
    const dl = await open()
    const resolved: ResolvedEvent[] = []
    dl.on('cidget:download:resolved', (e) => resolved.push(e))
    const before = Date.now()
    const job = await dl.add(`/ipns/${name}/model.bin`, { output: join(w.dir, 'out.bin') })
    expect(job.record).toMatchObject({ cid: '', name: `/ipns/${name}/model.bin` })
    const rec = await job.done
    expect(rec.status).toBe('success')
    expect(sha256(await readFile(join(w.dir, 'out.bin')))).toBe(sha256(v1))
    expect(rec).toMatchObject({ cid: cid1, path: '/data/model.bin', name: `/ipns/${name}/model.bin`, nameSequence: '3' })
    expect(rec.nameValidity).toMatch(/^\d{4}-\d\d-\d\dT/)
    expect(rec.nameResolvedAt).toBeGreaterThanOrEqual(before)
    expect(rec.nameResolvedAt).toBeLessThanOrEqual(Date.now())
    expect(resolved).toEqual([{ id: rec.id, name: `/ipns/${name}/model.bin`, cid: cid1, path: '/data/model.bin', sequence: '3', validity: rec.nameValidity }])
  })

  it('resolves a DNSLink domain chained to the key; the default output name is the last segment', async () => {
    await publish(`/ipfs/${cid1}`, 1)
    dns.setTxt('_dnslink.models.example', [`dnslink=/ipns/${name}/data`])
    const dl = await open()
    const before = process.cwd()
    process.chdir(w.dir)
    try {
      const rec = await (await dl.add('ipns://models.example/model.bin')).done
      expect(rec).toMatchObject({ status: 'success', cid: cid1, path: '/data/model.bin', output: join(w.dir, 'model.bin'), nameSequence: '1' })
    } finally {
      process.chdir(before)
    }
    expect(sha256(await readFile(join(w.dir, 'model.bin')))).toBe(sha256(v1))
  })

  it('a resume continues the CID the name resolved to, even after the name moved', async () => {
    await publish(`/ipfs/${cid1}/data`, 1)
    w.gateways[0]?.setMaxBytesPerSecond(512 * KiB)
    const dl = await open()
    const output = join(w.dir, 'model.bin')
    const job = await dl.add(`/ipns/${name}/model.bin`, { output })
    await progressReaches(dl, job.id, 256 * KiB)
    await dl.pause(job.id)
    expect((await job.done).status).toBe('paused')
    await publish(`/ipfs/${cid2}/data`, 2)
    w.gateways[0]?.setMaxBytesPerSecond(undefined)
    w.gateways[0]!.requests.length = 0
    const rec = await (await dl.resume(job.id)).done
    expect(rec).toMatchObject({ status: 'success', cid: cid1, nameSequence: '1' })
    expect(sha256(await readFile(output))).toBe(sha256(v1))
    // no record asked for, nothing of the new version fetched
    expect(w.gateways[0]!.requests.filter((r) => r.format === 'ipns-record' || r.url.includes(cid2))).toEqual([])
  })

  it('done and unmoved: nothing fetched; moved: an update that names the download it updates; --force: a new download; a removed output: the newest', async () => {
    await publish(`/ipfs/${cid1}/data/model.bin`, 1)
    const dl = await open()
    const output = join(w.dir, 'm.bin')
    const first = await (await dl.add(`/ipns/${name}`, { output })).done
    expect(first.cid).toBe(cid1)
    w.gateways[0]!.requests.length = 0
    const again = await dl.add(`/ipns/${name}`, { output })
    expect(again.id).toBe(first.id)
    expect(w.gateways[0]!.requests.map((r) => r.format)).toEqual(['ipns-record'])

    await publish(`/ipfs/${cid2}/data/model.bin`, 2)
    const updated = await (await dl.add(`/ipns/${name}`, { output })).done
    expect(updated).toMatchObject({ status: 'success', cid: cid2, nameSequence: '2', updateOf: first.id })
    expect(updated.updateReport).toMatchObject({ keptFiles: 0, reusedBytes: 0, fetchedBytes: v2.byteLength })
    expect(sha256(await readFile(output))).toBe(sha256(v2))

    await publish(`/ipfs/${cid1}/data/model.bin`, 3)
    const forced = await (await dl.add(`/ipns/${name}`, { output, force: true })).done
    expect(forced).toMatchObject({ status: 'success', cid: cid1, nameSequence: '3', updateOf: null })
    expect(sha256(await readFile(output))).toBe(sha256(v1))

    await publish(`/ipfs/${cid2}/data/model.bin`, 4)
    await rm(output)
    const refetched = await (await dl.add(`/ipns/${name}`, { output })).done
    expect(refetched).toMatchObject({ id: forced.id, status: 'success', cid: cid2, nameSequence: '4' })
    expect(sha256(await readFile(output))).toBe(sha256(v2))
  })

  it('no valid record: the download fails with CIDGET_ERR_NAME_NOT_RESOLVED and the gateway that lied is marked', async () => {
    const other = await generateKeyPair('Ed25519')
    w.gateways[0]?.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(other, `/ipfs/${cid1}`, 1, 3_600_000)))
    const dl = await open()
    const marks: string[] = []
    dl.on('cidget:gateway', (e) => marks.push(`${e.gateway} ${e.state}`))
    const rec = await (await dl.add(`/ipns/${name}`, { output: join(w.dir, 'x') })).done
    expect(rec).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_NAME_NOT_RESOLVED', cid: '' })
    expect(rec.error).toContain('signature does not verify')
    expect(marks).toContain(`${w.gateways[0]!.url} dropped`)
  })

  it('a queued name is resolved by the run that starts it, not when it is queued', async () => {
    const file = await addFile(w.blocks, v2)
    const dl = await open()
    const [queued] = await dl.enqueue([{ target: `/ipns/${name}`, output: 'q.bin' }], { dir: w.dir })
    expect(queued).toMatchObject({ status: 'pending', cid: '', name: `/ipns/${name}` })
    expect(w.gateways[0]!.requests.filter((r) => r.format === 'ipns-record')).toEqual([])
    await publish(`/ipfs/${file.toString()}`, 5)
    const [job] = await dl.resumeAll()
    const rec = await job!.done
    expect(rec).toMatchObject({ status: 'success', cid: file.toString(), nameSequence: '5' })
    expect(sha256(await readFile(join(w.dir, 'q.bin')))).toBe(sha256(v2))
  })
})
