/**
 * Updates: a name that moved to a new version of a tree is brought up to date
 * in place, fetching only what changed (real gateway on loopback, real files).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { lstat, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { MemoryBlocks, addDirectory, addFile, seededBytes } from '../../src/testing/index.js'
import { OLD_SUFFIX, settleSwap, swapIn } from '../../src/strategies/verified/update.js'
import { KiB, MiB, progressReaches, sha256, world, type World } from '../helpers.js'

type Tree = Map<string, Uint8Array>

/** Downloads of seconds run on the real clock: the fake one's heartbeats race ahead of the leases under load. */
const REAL_TIME = { now: Date.now, sleep: undefined }

/** Every file below `dir`, by path relative to it. */
async function filesOf (dir: string, rel = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`
    if (e.isDirectory()) for (const [k, v] of await filesOf(dir, r)) out.set(k, v)
    else out.set(r, sha256(await readFile(join(dir, r))))
  }
  return out
}

function hashes (tree: Tree): Map<string, string> {
  return new Map([...tree].map(([k, v]) => [k, sha256(v)]))
}

/** The data blocks of a file as the importer makes it (its leaves, or the one block). */
async function leavesOf (content: Uint8Array, opts: Parameters<typeof addFile>[2] = {}): Promise<string[]> {
  const blocks = new MemoryBlocks()
  const root: CID = await addFile(blocks, content, opts)
  if (root.code !== dagPb.code) return [root.toString()]
  return dagPb.decode(blocks.get(root)).Links.map((l) => l.Hash.toString())
}

/** A world whose first gateway serves an IPNS name's records: `publish` puts a tree under `site/` and points the name at it. */
function named (): {
  readonly w: World
  readonly name: string
  publish: (entries: Array<{ path: string, content?: Uint8Array }>, sequence?: number) => Promise<string>
  open: () => ReturnType<World['open']>
} {
  let w: World | undefined
  let key: PrivateKey | undefined
  let name = ''
  let seq = 0
  beforeEach(async () => {
    w = await world({ size: 4 * KiB })
    key = await generateKeyPair('Ed25519')
    name = peerIdFromPrivateKey(key).toCID().toString(base36)
  })
  afterEach(async () => { await w?.close() })
  return {
    get w () { return w as World },
    get name () { return name },
    publish: async (entries, sequence = ++seq) => {
      const root = (await addDirectory((w as World).blocks, entries.map((e) => ({ ...e, path: `site/${e.path}` })))).toString()
      ;(w as World).gateways[0]!.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key as PrivateKey, `/ipfs/${root}/site`, sequence, 3_600_000)))
      return root
    },
    open: async () => await (w as World).open({ routers: [], dnsResolvers: [], nameSettleMs: 10, ...REAL_TIME })
  }
}

describe('updates of a tree', () => {
  const n = named()
  const publish = async (tree: Tree): Promise<string> => await n.publish([...tree].map(([path, content]) => ({ path, content })))

  /** Every block CID the gateway sent since its record was last emptied: raw answers and CAR bodies. */
  function sent (): Set<string> {
    const out = new Set<string>()
    for (const r of n.w.gateways[0]!.requests) {
      if (r.format === 'raw') out.add(r.path.slice('/ipfs/'.length))
      for (const c of r.carBlocks ?? []) out.add(c)
    }
    return out
  }

  it('1,000 files, 10 changed (grown, shrunk, edited), 5 added, 5 removed, one altered by hand, one added by the user: only what changed crosses the wire', async () => {
    const v1: Tree = new Map()
    for (let i = 0; i < 1000; i++) v1.set(`d${i % 10}/f${String(i).padStart(3, '0')}.bin`, seededBytes(i < 3 ? MiB : 2 * KiB, 1000 + i))
    const v2: Tree = new Map(v1)
    const big = [...v1.keys()].slice(0, 3)
    const [grown, shrunk, edited] = big.map((p) => v1.get(p) as Uint8Array)
    v2.set(big[0]!, Buffer.concat([grown!, seededBytes(300 * KiB, 5)]))
    v2.set(big[1]!, shrunk!.subarray(0, 600 * KiB))
    const e = Uint8Array.from(edited!)
    e[300 * KiB] = (e[300 * KiB] ?? 0) ^ 0xff
    v2.set(big[2]!, e)
    const small = [...v1.keys()].slice(10, 17)
    for (const [j, p] of small.entries()) v2.set(p, seededBytes(3 * KiB, 7000 + j))
    const removed = [...v1.keys()].slice(995)
    for (const p of removed) v2.delete(p)
    for (let j = 0; j < 5; j++) v2.set(`new/n${j}.bin`, seededBytes(2 * KiB, 8000 + j))

    const root1 = await publish(v1)
    const dl = await n.open()
    const output = join(n.w.dir, 'out')
    const first = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(first).toMatchObject({ status: 'success', cid: root1, path: '/site' })
    expect(await filesOf(output)).toEqual(hashes(v1))

    // by hand: a file of v1 altered (unchanged in v2), one of the user's own added
    const altered = [...v1.keys()][500]!
    await writeFile(join(output, altered), seededBytes(2 * KiB, 99))
    await writeFile(join(output, 'd0', 'mine.txt'), 'my notes')

    const root2 = await publish(v2)
    n.w.gateways[0]!.requests.length = 0
    const update = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(update).toMatchObject({ status: 'success', cid: root2, updateOf: first.id })

    const expected = hashes(v2)
    expected.set('d0/mine.txt', sha256(new TextEncoder().encode('my notes')))
    expect(await filesOf(output)).toEqual(expected)
    await expect(lstat(output + OLD_SUFFIX)).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(lstat(output + '.cidget-partial')).rejects.toMatchObject({ code: 'ENOENT' })

    // the wire: no block of a file that did not change, except the one altered by hand
    const wire = sent()
    const unchanged = [...v2].filter(([p, c]) => v1.get(p) === c && p !== altered)
    expect(unchanged).toHaveLength(1000 - 10 - 5 - 1)
    for (const [p, c] of unchanged) {
      for (const leaf of await leavesOf(c)) expect(wire.has(leaf), `${p} was fetched again`).toBe(false)
    }
    for (const leaf of await leavesOf(v2.get(altered)!)) expect(wire.has(leaf)).toBe(true)
    // the grown file's first MiB, the shrunk file whole (its last leaf is the start of an old one) and the
    // edited file's other three leaves came from the old copy
    const [g, s, ed] = await Promise.all(big.map(async (p) => await leavesOf(v2.get(p)!)))
    expect(s).toHaveLength(3)
    for (const leaf of [...g!.slice(0, 4), ...s!, ed![0]!, ...ed!.slice(2)]) expect(wire.has(leaf)).toBe(false)
    expect(wire.has(ed![1]!)).toBe(true)

    const changedBytes = [...v2].filter(([p, c]) => v1.get(p) !== c).reduce((n, [, c]) => n + c.byteLength, 0)
    const fetchedData = n.w.gateways[0]!.bytesSent()
    // the changed data that had to come (the grown tail, the shrunk and the edited leaves, small files, the altered one), plus the inner nodes
    expect(fetchedData).toBeLessThan(1.1 * (changedBytes - (MiB + 600 * KiB + 3 * 256 * KiB) + 2 * KiB) + 200 * KiB)

    expect(update.updateReport).toMatchObject({
      keptFiles: 1000 - 10 - 5 - 1,
      removedCount: 5,
      removed: expect.arrayContaining(removed) as unknown,
      carriedCount: 1,
      carried: ['d0/mine.txt']
    })
    expect(update.updateReport!.reusedBytes).toBe(MiB + 600 * KiB + 3 * 256 * KiB)
  })

  it('a name that did not move fetches nothing; an unfinished update is resumed, not started again', async () => {
    const v1: Tree = new Map([['a.bin', seededBytes(600 * KiB, 1)], ['b.bin', seededBytes(KiB, 2)]])
    await publish(v1)
    const dl = await n.open()
    const output = join(n.w.dir, 'out')
    const first = await (await dl.add(`/ipns/${n.name}`, { output })).done
    n.w.gateways[0]!.requests.length = 0
    expect((await dl.add(`/ipns/${n.name}`, { output })).id).toBe(first.id)
    expect(n.w.gateways[0]!.requests.every((r) => r.format === 'ipns-record')).toBe(true)

    const v2: Tree = new Map([['a.bin', seededBytes(900 * KiB, 3)], ['b.bin', seededBytes(KiB, 2)]])
    await publish(v2)
    n.w.gateways[0]!.setMaxBytesPerSecond(256 * KiB)
    const job = await dl.add(`/ipns/${n.name}`, { output })
    await progressReaches(dl, job.id, 300 * KiB)
    await dl.pause(job.id)
    expect((await job.done).status).toBe('paused')
    // the old version is whole meanwhile
    expect(await filesOf(output)).toEqual(hashes(v1))
    n.w.gateways[0]!.setMaxBytesPerSecond(undefined)
    const resumed = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(resumed).toMatchObject({ id: job.id, status: 'success', updateOf: first.id })
    expect(resumed.updateReport).toMatchObject({ keptFiles: 1, keptBytes: KiB })
    expect(await filesOf(output)).toEqual(hashes(v2))
  })
})

describe('updates: what must not be lost or trusted', () => {
  const n = named()
  const { publish, open } = n

  it('your files at paths the new version now uses go beside them (.cidget-local), also those in a directory it replaced by a file', async () => {
    await publish([{ path: 'a.txt', content: seededBytes(KiB, 1) }, { path: 'docs/x.txt', content: seededBytes(KiB, 2) }])
    const dl = await open()
    const output = join(n.w.dir, 'out')
    await (await dl.add(`/ipns/${n.name}`, { output })).done
    await writeFile(join(output, 'notes.md'), 'mine')
    await writeFile(join(output, 'docs', 'mine.txt'), 'also mine')
    await publish([{ path: 'a.txt', content: seededBytes(KiB, 1) }, { path: 'notes.md', content: seededBytes(KiB, 3) }, { path: 'docs', content: seededBytes(KiB, 4) }])
    const rec = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(rec.status).toBe('success')
    expect(await readFile(join(output, 'notes.md'))).toEqual(Buffer.from(seededBytes(KiB, 3)))
    expect(await readFile(join(output, 'notes.md.cidget-local'), 'utf8')).toBe('mine')
    expect(await readFile(join(output, 'docs'))).toEqual(Buffer.from(seededBytes(KiB, 4)))
    expect(await readFile(join(output, 'docs.cidget-local', 'mine.txt'), 'utf8')).toBe('also mine')
    expect(rec.updateReport).toMatchObject({ carriedCount: 2, carried: expect.arrayContaining(['notes.md.cidget-local', 'docs.cidget-local/mine.txt']) as unknown, previousUnknown: false })
  })

  it('when the old version is on no gateway any more, nothing it had is deleted: kept and reported', async () => {
    const root1 = await publish([{ path: 'keep.txt', content: seededBytes(KiB, 1) }, { path: 'gone.txt', content: seededBytes(KiB, 2) }])
    const dl = await open()
    const output = join(n.w.dir, 'out')
    await (await dl.add(`/ipns/${n.name}`, { output })).done
    await publish([{ path: 'keep.txt', content: seededBytes(KiB, 1) }, { path: 'new.txt', content: seededBytes(KiB, 3) }])
    n.w.gateways[0]!.addFault({ fault: { type: 'status', status: 404 }, match: { path: `/ipfs/${root1}` } })
    const rec = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(rec.status).toBe('success')
    expect((await readdir(output)).sort()).toEqual(['gone.txt', 'keep.txt', 'new.txt'])
    expect(rec.updateReport).toMatchObject({ previousUnknown: true, carried: ['gone.txt'], removedCount: 0 })
  })

  it('an update whose staging directory was deleted starts again from the old output, which stays whole', async () => {
    const v1 = [{ path: 'a.bin', content: seededBytes(600 * KiB, 1) }, { path: 'b.bin', content: seededBytes(KiB, 2) }]
    const v2 = [{ path: 'a.bin', content: seededBytes(900 * KiB, 3) }, { path: 'b.bin', content: seededBytes(KiB, 2) }]
    await publish(v1)
    const dl = await open()
    const output = join(n.w.dir, 'out')
    await (await dl.add(`/ipns/${n.name}`, { output })).done
    await publish(v2)
    n.w.gateways[0]!.setMaxBytesPerSecond(256 * KiB)
    const job = await dl.add(`/ipns/${n.name}`, { output })
    await progressReaches(dl, job.id, 300 * KiB)
    await dl.pause(job.id)
    await job.done
    await rm(output + '.cidget-partial', { recursive: true })
    n.w.gateways[0]!.setMaxBytesPerSecond(undefined)
    const rec = await (await dl.resume(job.id)).done
    expect(rec.status).toBe('success')
    expect(await filesOf(output)).toEqual(new Map(v2.map((f) => [f.path, sha256(f.content)])))
  })

  it('an older record of the same key (a source that withheld the newer one) does not roll the output back', async () => {
    await publish([{ path: 'a.txt', content: seededBytes(KiB, 1) }], 5)
    const dl = await open()
    const output = join(n.w.dir, 'out')
    const first = await (await dl.add(`/ipns/${n.name}`, { output })).done
    await publish([{ path: 'a.txt', content: seededBytes(KiB, 9) }], 4)
    const again = await (await dl.add(`/ipns/${n.name}`, { output })).done
    expect(again.id).toBe(first.id)
    expect(await readFile(join(output, 'a.txt'))).toEqual(Buffer.from(seededBytes(KiB, 1)))
  })

  it('a single file whose every block the old copy holds (another DAG of the same bytes) is written from it, nothing fetched', async () => {
    const data = seededBytes(700 * KiB, 4)
    const v1 = (await addFile(n.w.blocks, data)).toString()
    const v0 = (await addFile(n.w.blocks, data, { cidVersion: 0, rawLeaves: true })).toString()
    expect(v0).not.toBe(v1)
    const dl = await open()
    const output = join(n.w.dir, 'f.bin')
    await (await dl.add(v1, { output })).done
    n.w.gateways[0]!.requests.length = 0
    const rec = await (await dl.add(v0, { output })).done
    expect(rec).toMatchObject({ status: 'success', cid: v0, updateReport: { reusedBytes: data.byteLength, fetchedBytes: 0 } })
    expect(sha256(await readFile(output))).toBe(sha256(data))
    expect(n.w.gateways[0]!.requests.filter((r) => r.format === 'raw' && r.path !== `/ipfs/${v0}`)).toEqual([])
  })
})

describe('updates of a CID\'s output', () => {
  let w: World
  beforeEach(async () => { w = await world({ size: 4 * KiB }) })
  afterEach(async () => { await w.close() })

  it('-o at the output of an earlier finished download brings it to the new CID; other modes refuse', async () => {
    const v1 = (await addDirectory(w.blocks, [{ path: 'a.bin', content: seededBytes(300 * KiB, 1) }, { path: 'b.bin', content: seededBytes(KiB, 2) }])).toString()
    const v2 = (await addDirectory(w.blocks, [{ path: 'a.bin', content: seededBytes(300 * KiB, 1) }, { path: 'c.bin', content: seededBytes(KiB, 3) }])).toString()
    const dl = await w.open(REAL_TIME)
    const output = join(w.dir, 'out')
    const first = await (await dl.add(v1, { output })).done
    await expect(dl.add(v2, { output, mode: 'path' })).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_EXISTS' })
    w.gateways[0]!.requests.length = 0
    const update = await (await dl.add(v2, { output })).done
    expect(update).toMatchObject({ status: 'success', cid: v2, updateOf: first.id })
    expect(update.updateReport).toMatchObject({ keptFiles: 1, keptBytes: 300 * KiB, removed: ['b.bin'], removedCount: 1, carriedCount: 0 })
    expect([...(await filesOf(output)).keys()].sort()).toEqual(['a.bin', 'c.bin'])
    for (const leaf of await leavesOf(seededBytes(300 * KiB, 1))) expect(w.gateways[0]!.requests.some((r) => r.path.includes(leaf) || (r.carBlocks ?? []).includes(leaf))).toBe(false)
  })

  it('content without raw leaves (CIDv0): the unchanged files\' dag-pb leaves are found in the old copy, not fetched', async () => {
    const v0 = { cidVersion: 0 as const, rawLeaves: false }
    const same = seededBytes(700 * KiB, 1)
    const v1 = (await addDirectory(w.blocks, [{ path: 'same.bin', content: same }, { path: 'x.bin', content: seededBytes(300 * KiB, 2) }], v0)).toString()
    const v2 = (await addDirectory(w.blocks, [{ path: 'same.bin', content: same }, { path: 'x.bin', content: seededBytes(300 * KiB, 3) }], v0)).toString()
    expect(v1.startsWith('Qm')).toBe(true)
    const dl = await w.open(REAL_TIME)
    const output = join(w.dir, 'out')
    await (await dl.add(v1, { output })).done
    w.gateways[0]!.requests.length = 0
    const rec = await (await dl.add(v2, { output })).done
    expect(rec).toMatchObject({ status: 'success', updateReport: { keptFiles: 1, keptBytes: 700 * KiB } })
    expect(await readFile(join(output, 'x.bin'))).toEqual(Buffer.from(seededBytes(300 * KiB, 3)))
    const leaves = await leavesOf(same, v0)
    expect(leaves.length).toBeGreaterThan(1)
    for (const leaf of leaves) expect(w.gateways[0]!.requests.some((r) => r.path.includes(leaf) || (r.carBlocks ?? []).includes(leaf)), leaf).toBe(false)
  })

  it('asking again for the first CID after an update brings the output back to it, not "done"', async () => {
    const v1 = (await addDirectory(w.blocks, [{ path: 'a.bin', content: seededBytes(KiB, 1) }])).toString()
    const v2 = (await addDirectory(w.blocks, [{ path: 'a.bin', content: seededBytes(KiB, 2) }])).toString()
    const dl = await w.open(REAL_TIME)
    const output = join(w.dir, 'out')
    await (await dl.add(v1, { output })).done
    const second = await (await dl.add(v2, { output })).done
    const back = await (await dl.add(v1, { output })).done
    expect(back).toMatchObject({ status: 'success', cid: v1, updateOf: second.id })
    expect(await readFile(join(output, 'a.bin'))).toEqual(Buffer.from(seededBytes(KiB, 1)))
  })
})

describe('the swap of an update', () => {
  let dir: string
  beforeEach(async () => {
    dir = join(await import('node:os').then((os) => os.tmpdir()), `cidget-swap-${process.pid}-${Math.random().toString(36).slice(2)}`)
    await mkdir(dir)
  })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  async function tree (path: string, content: string): Promise<void> {
    await mkdir(path, { recursive: true })
    await writeFile(join(path, 'f'), content)
  }

  it('puts the new version in place and deletes the old one', async () => {
    await tree(join(dir, 'out'), 'old')
    await tree(join(dir, 'out.cidget-partial'), 'new')
    await swapIn(join(dir, 'out.cidget-partial'), join(dir, 'out'))
    expect(await readFile(join(dir, 'out', 'f'), 'utf8')).toBe('new')
    expect(await readdir(dir)).toEqual(['out'])
  })

  it('stopped between the renames: the old version goes back in place; stopped after them: the old one is deleted', async () => {
    await tree(join(dir, 'out' + OLD_SUFFIX), 'old')
    await settleSwap(join(dir, 'out'))
    expect(await readFile(join(dir, 'out', 'f'), 'utf8')).toBe('old')
    expect(await readdir(dir)).toEqual(['out'])

    await rename(join(dir, 'out'), join(dir, 'out' + OLD_SUFFIX))
    await tree(join(dir, 'out'), 'new')
    await settleSwap(join(dir, 'out'))
    expect(await readFile(join(dir, 'out', 'f'), 'utf8')).toBe('new')
    expect(await readdir(dir)).toEqual(['out'])
    await settleSwap(join(dir, 'out'))
    expect(await readdir(dir)).toEqual(['out'])
  })
})
