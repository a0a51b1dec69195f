/**
 * Verified mode against real test gateways: content built with ipfs-unixfs-importer
 * in many shapes, hostile gateways, hostile DAGs.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { once } from 'node:events'
import { readdir, readFile, readlink, stat, lstat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 as mhSha256 } from 'multiformats/hashes/sha2'
import * as rawCodec from 'multiformats/codecs/raw'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { MemoryBlocks, addFile, addDirectory, seededBytes, type TestGateway, type ImporterOptions } from '../../src/testing/index.js'
import type { DownloaderInit } from '../../src/engine/downloader.js'
import { progressReaches, sha256, KiB, MiB, gatewaySetup, type GatewaySetup } from '../helpers.js'

type Setup = GatewaySetup

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function setup (blocks: MemoryBlocks, n = 1): Promise<Setup> {
  return await gatewaySetup(blocks, n, (c) => { cleanups.push(c) }, { prefix: 'cidget-verified-', defaults: { timeoutMs: 2_000 } })
}

async function put (blocks: MemoryBlocks, bytes: Uint8Array, code: number): Promise<CID> {
  const cid = CID.createV1(code, await mhSha256.digest(bytes))
  blocks.put(cid, bytes)
  return cid
}

function pbNode (fs: UnixFS, links: dagPb.PBLink[] = []): Uint8Array {
  return dagPb.encode(dagPb.prepare({ Data: fs.marshal(), Links: links }))
}

/** The blocks the gateways sent: raw answers by the CID they were asked for, CAR answers by the blocks they carry. */
function sentBlocks (gateways: TestGateway[]): { raw: CID[], car: CID[] } {
  const reqs = gateways.flatMap(g => g.requests).filter(r => r.status === 200)
  return {
    raw: reqs.filter(r => r.format === 'raw').map(r => CID.parse(r.path.split('/')[2]!)),
    car: reqs.filter(r => r.format === 'car').flatMap(r => (r.carBlocks ?? []).map(c => CID.parse(c)))
  }
}

/** A block's identity whatever the CID version: its multihash. */
function key (cid: CID): string {
  return Buffer.from(cid.multihash.bytes).toString('hex')
}

/** Everything under `dir`, as relative paths. */
async function tree (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    out.push(join(e.parentPath, e.name).slice(dir.length + 1))
  }
  return out.sort()
}

describe('files in every shape', () => {
  const shapes: Array<[string, number, ImporterOptions]> = [
    ['1 KiB chunks, balanced, raw leaves, CIDv1', 300 * KiB + 7, { chunker: fixedSize({ chunkSize: 1024 }) }],
    ['64 KiB chunks, trickle, raw leaves', 2 * MiB + 1, { chunker: fixedSize({ chunkSize: 64 * KiB }), layout: trickle() }],
    ['256 KiB chunks, dag-pb leaves, CIDv0', 3 * MiB, { cidVersion: 0, rawLeaves: false }],
    ['1 MiB chunks, balanced', 5 * MiB + 3, { chunker: fixedSize({ chunkSize: MiB }) }],
    ['deep trickle (1 KiB chunks, 2 links per node)', 200 * KiB, { chunker: fixedSize({ chunkSize: 1024 }), layout: trickle({ maxChildrenPerNode: 2, layerRepeat: 1 }) }],
    ['narrow balanced tree (3 links per node)', 100 * KiB, { chunker: fixedSize({ chunkSize: 1024 }), layout: balanced({ maxChildrenPerNode: 3 }) }],
    ['dag-pb leaves of UnixFS type raw', 600 * KiB, { rawLeaves: false, leafType: 'raw', chunker: fixedSize({ chunkSize: 100 * KiB }) }],
    ['empty file', 0, {}],
    ['a 1-byte file', 1, {}],
    ['exactly one chunk', 256 * KiB, {}],
    ['one chunk and one byte', 256 * KiB + 1, {}],
    ['one chunk, dag-pb leaf', 1000, { rawLeaves: false }]
  ]
  for (const [name, size, opts] of shapes) {
    it(name, async () => {
      const blocks = new MemoryBlocks()
      const data = seededBytes(size, size + 1)
      const cid = await addFile(blocks, data, opts)
      const s = await setup(blocks, 2)
      const dl = await s.open()
      const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
      expect(done.status, done.error ?? '').toBe('success')
      const got = await readFile(done.output)
      expect(got.byteLength).toBe(size)
      expect(sha256(got)).toBe(sha256(data))
      expect(done.hash).toBe(sha256(data))
      expect(done.size).toBe(size)
      // only trustless requests went out, and no block was sent twice but a run's own node
      const reqs = s.gateways.flatMap(g => g.requests)
      expect(reqs.every(r => r.format === 'raw' || r.format === 'car')).toBe(true)
      const { raw, car } = sentBlocks(s.gateways)
      const leaves = [...raw, ...car].filter(c => c.code === rawCodec.code).map(key)
      expect(new Set(leaves).size).toBe(leaves.length)
      expect(new Set(raw.map(key)).size).toBe(raw.length)
    })
  }

  for (const [shape, opts] of [
    ['one level of leaves', {}],
    ['inner nodes of 8 leaves', { layout: balanced({ maxChildrenPerNode: 8 }) }]
  ] as Array<[string, ImporterOptions]>) {
    it(`end game (${shape}): the fast gateway, left idle, takes over the rest of the slow one's run`, async () => {
      const blocks = new MemoryBlocks()
      const data = seededBytes(16 * MiB, 53) // 64 leaves: 16 with the root, then runs of 16 on both gateways
      const cid = await addFile(blocks, data, opts)
      const s = await setup(blocks, 2)
      const [fast, slow] = s.gateways as [TestGateway, TestGateway]
      slow.setMaxBytesPerSecond(4 * MiB)
      const dl = await s.open({ hedgeAfterMs: undefined })
      const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
      expect(done.status, done.error ?? '').toBe('success')
      expect(sha256(await readFile(done.output))).toBe(sha256(data))
      // a range asked of `fast` starts inside one asked of `slow`: the second half of a slow run, handed on
      const ranges = (g: TestGateway): Array<[number, number]> => g.requests.filter(r => r.format === 'car').map(r => {
        const [from, to] = (new URL(r.url, g.url).searchParams.get('entity-bytes') ?? '').split(':').map(Number)
        return [from as number, to as number]
      })
      const slowRanges = ranges(slow)
      expect(ranges(fast).some(([from]) => slowRanges.some(([a, b]) => from > a && from <= b))).toBe(true)
      expect(slow.requests.some(r => r.format === 'car' && r.aborted)).toBe(true)
      // no leaf was delivered twice (a cut stream's last bytes may have been on the way)
      const leaves = s.gateways.flatMap(g => g.requests).filter(r => r.format === 'car' && !r.aborted).flatMap(r => r.carBlocks ?? [])
        .map(c => CID.parse(c)).filter(c => c.code === rawCodec.code).map(key)
      expect(new Set(leaves).size).toBe(leaves.length)
    })
  }

  it('one request per block when runs are off', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(2 * MiB + 5, 3)
    const cid = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: 64 * KiB }) })
    const s = await setup(blocks)
    const dl = await s.open({ runBlocks: 0 })
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const reqs = s.gateways[0]!.requests
    expect(reqs.every(r => r.format === 'raw')).toBe(true)
    expect(new Set(reqs.map(r => r.path)).size).toBe(reqs.length)
    expect(reqs.length).toBe(blocks.size)
  })

  it('an identity CID is written without any request', async () => {
    const blocks = new MemoryBlocks()
    const s = await setup(blocks)
    const dl = await s.open()
    // bafkqaaa: the empty identity CID; bafkqadlimvwgy3zaj5hhe3lbnruq: identity "hello world"
    const done = await (await dl.add('bafkqac3imvwgy3zao5xxe3de', { output: join(s.dir, 'id') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await readFile(done.output, 'utf8')).toBe('hello world')
    expect(s.gateways[0]!.requests).toHaveLength(0)
  })

  it('--sha256 is checked on top of the CID', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(100 * KiB)
    const cid = await addFile(blocks, data)
    const s = await setup(blocks)
    const dl = await s.open()
    const ok = await (await dl.add(cid.toString(), { output: join(s.dir, 'a'), sha256: sha256(data) })).done
    expect(ok.status).toBe('success')
    const bad = await (await dl.add(cid.toString(), { output: join(s.dir, 'b'), sha256: 'ab'.repeat(32) })).done
    expect(bad.status).toBe('failed')
    expect(bad.errorCode).toBe('CIDGET_ERR_HASH_MISMATCH')
    await expect(stat(join(s.dir, 'b'))).rejects.toThrow()
  })
})

describe('directories', () => {
  it('writes files, subdirectories, empty files, empty directories and unicode names', async () => {
    const blocks = new MemoryBlocks()
    const entries = [
      { path: 'readme.txt', content: new TextEncoder().encode('hello') },
      { path: 'data/big.bin', content: seededBytes(700 * KiB, 3) },
      { path: 'data/nested/deeper/small.bin', content: seededBytes(10, 4) },
      { path: 'empty.txt', content: new Uint8Array(0) },
      { path: 'empty-dir' },
      { path: 'ünïcødé/日本語 ファイル.txt', content: new TextEncoder().encode('こんにちは') }
    ]
    const root = await addDirectory(blocks, entries)
    const s = await setup(blocks, 2)
    const dl = await s.open()
    const progress: Array<{ bytes: number, files: number | null }> = []
    dl.on('cidget:download:progress', e => progress.push({ bytes: e.bytes, files: e.files }))
    const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(done.hash).toBeNull()
    // progress counts bytes and files
    expect(progress.at(-1)).toEqual({ bytes: 700 * KiB + 10 + 5 + 15, files: 5 })
    const out = join(s.dir, 'out')
    expect(await tree(out)).toEqual([
      'data', 'data/big.bin', 'data/nested', 'data/nested/deeper', 'data/nested/deeper/small.bin',
      'empty-dir', 'empty.txt', 'readme.txt', 'ünïcødé', 'ünïcødé/日本語 ファイル.txt'
    ])
    for (const e of entries) {
      if (e.content !== undefined) expect(sha256(await readFile(join(out, e.path)))).toBe(sha256(e.content))
    }
    expect((await stat(join(out, 'empty-dir'))).isDirectory()).toBe(true)
    expect(done.size).toBe(700 * KiB + 10 + 5 + 15)
  })

  it('writes a HAMT-sharded directory of 10,000 entries', async () => {
    const blocks = new MemoryBlocks()
    const entries = Array.from({ length: 10_000 }, (_, i) => ({ path: `f${i}.txt`, content: new TextEncoder().encode(`file ${i}\n`) }))
    const root = await addDirectory(blocks, entries, { shardSplitThresholdBytes: 1 })
    const s = await setup(blocks, 2)
    const dl = await s.open({ blockConcurrency: 32 })
    const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    const names = await readdir(join(s.dir, 'out'))
    expect(names).toHaveLength(10_000)
    expect(await readFile(join(s.dir, 'out', 'f1234.txt'), 'utf8')).toBe('file 1234\n')
  }, 120_000)

  it('resolves sub-paths through plain and sharded directories', async () => {
    const blocks = new MemoryBlocks()
    const big = seededBytes(300 * KiB, 9)
    const entries = [
      ...Array.from({ length: 300 }, (_, i) => ({ path: `shard/x${i}`, content: new TextEncoder().encode(String(i)) })),
      { path: 'shard/target/model.bin', content: big }
    ]
    const root = await addDirectory(blocks, entries, { shardSplitThresholdBytes: 1000 })
    const s = await setup(blocks)
    const dl = await s.open()
    const file = await (await dl.add(`/ipfs/${root.toString()}/shard/target/model.bin`, { output: join(s.dir, 'm.bin') })).done
    expect(file.status, file.error ?? '').toBe('success')
    expect(sha256(await readFile(file.output))).toBe(sha256(big))
    const sub = await (await dl.add(`ipfs://${root.toString()}/shard/target`, { output: join(s.dir, 'sub') })).done
    expect(sub.status, sub.error ?? '').toBe('success')
    expect(await tree(sub.output)).toEqual(['model.bin'])
    const missing = await (await dl.add(`${root.toString()}/shard/nope`, { output: join(s.dir, 'n') })).done
    expect(missing.status).toBe('failed')
    expect(missing.errorCode).toBe('CIDGET_ERR_NOT_FOUND')
  })
})

describe('hostile gateways', () => {
  it('wrong blocks, truncation, stalls and timeouts: completes from the good gateway, never writes a wrong byte', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(4 * MiB, 11)
    const cid = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: 128 * KiB }) })
    const s = await setup(blocks, 5)
    const [wrong, truncating, stalling, slow] = s.gateways as [TestGateway, TestGateway, TestGateway, TestGateway, TestGateway]
    wrong.addFault({ fault: { type: 'wrong-block' } })
    truncating.addFault({ fault: { type: 'reset', afterBytes: 1000 } })
    stalling.addFault({ fault: { type: 'stall', afterBytes: 100 } })
    slow.addFault({ fault: { type: 'latency', ms: 5_000 } })
    const dl = await s.open({ timeoutMs: 200, maxRetryAttempts: 100 })
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    // the gateway that lied was asked once and then never again
    expect(wrong.requests.filter(r => r.fault === 'wrong-block').length).toBe(1)
  })
})

describe('CAR runs of leaves', () => {
  /** 4 MiB in 16 raw leaves of 256 KiB under one node: one run by default. */
  async function sixteenLeaves (blocks: MemoryBlocks): Promise<{ cid: CID, data: Uint8Array, leaves: CID[] }> {
    const data = seededBytes(4 * MiB, 21)
    const cid = await addFile(blocks, data)
    const leaves = dagPb.decode(blocks.get(cid)).Links.map(l => l.Hash)
    expect(leaves).toHaveLength(16)
    return { cid, data, leaves }
  }

  it('asks for the root with its first leaves in one CAR request, then for consecutive leaves in one CAR request each (entity-bytes)', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(8 * MiB, 25)
    const cid = await addFile(blocks, data) // 32 leaves of 256 KiB under the root
    const leaves = dagPb.decode(blocks.get(cid)).Links.map(l => l.Hash.toString())
    const s = await setup(blocks)
    const dl = await s.open()
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const reqs = s.gateways[0]!.requests
    // nothing is known of the DAG at first: one CAR of the first 4 MiB brings the root and the first 16 leaves;
    // the root tells the other 16, asked for as one CAR of the root's byte range
    expect(reqs.map(r => [r.format, r.url.replace(/^.*\?/, '')])).toEqual([
      ['car', `format=car&dag-scope=entity&entity-bytes=0:${4 * MiB - 1}`],
      ['car', `format=car&dag-scope=entity&entity-bytes=${4 * MiB}:${8 * MiB - 1}`]
    ])
    expect(reqs[0]!.carBlocks).toEqual([cid.toString(), ...leaves.slice(0, 16)])
    expect(reqs[1]!.carBlocks).toEqual([cid.toString(), ...leaves.slice(16)])
  })

  it('a download that fails before its walk (a limit on the root) leaves nothing running: the first CAR is cut', async () => {
    const blocks = new MemoryBlocks()
    const { cid } = await sixteenLeaves(blocks)
    const s = await setup(blocks)
    const gw = s.gateways[0]!
    gw.setMaxBytesPerSecond(256 * KiB) // the first CAR alone would take 16 s
    const dl = await s.open({ limits: { maxSize: MiB } })
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status).toBe('failed')
    expect(done.errorCode).toBe('CIDGET_ERR_DAG_LIMIT')
    const [car] = gw.requests
    expect(car?.format).toBe('car')
    if (car !== undefined && car.endedAt === null) await once(gw, 'response')
    expect(car?.aborted).toBe(true)
    expect(car?.bytesSent).toBeLessThan(4 * MiB)
  })

  it('a resumed download asks for no first CAR with the root: only the leaves it lacks', async () => {
    const blocks = new MemoryBlocks()
    const { cid, data, leaves } = await sixteenLeaves(blocks)
    const s = await setup(blocks)
    const gw = s.gateways[0]!
    // the first CAR is cut after 8 leaves; leaf 12, then asked alone, never answers: the download waits there
    gw.addFault({ fault: { type: 'reset', afterBytes: 8 * 256 * KiB + 4 * KiB }, match: { format: 'car' }, times: 1 })
    gw.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[12]!.toString()}` } })
    const dl = await s.open()
    const job = await dl.add(cid.toString(), { output: join(s.dir, 'out') })
    await progressReaches(dl, job.id, 8 * 256 * KiB)
    expect((await dl.pause(job.id)).status).toBe('paused')
    const before = gw.requests.length
    const done = await (await dl.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const again = gw.requests.slice(before)
    expect(again.length).toBeGreaterThan(0)
    expect(again.some(r => r.url.includes('entity-bytes=0:'))).toBe(false)
    const asked = again.flatMap(r => r.format === 'car' ? r.carBlocks ?? [] : [r.path.split('/')[2]])
    for (const leaf of leaves.slice(0, 8)) expect(asked).not.toContain(leaf.toString())
  })

  it('runs go on across the boundaries of inner nodes: the next node\'s leaves are planned before the walk gets there', async () => {
    const blocks = new MemoryBlocks()
    // 40 leaves of 256 KiB under 4 inner nodes of 10 (2.5 MiB each) under the root
    const data = seededBytes(10 * MiB, 24)
    const cid = await addFile(blocks, data, { layout: balanced({ maxChildrenPerNode: 10 }) })
    const inner = dagPb.decode(blocks.get(cid)).Links.map(l => l.Hash.toString())
    expect(inner).toHaveLength(4)
    const s = await setup(blocks)
    const dl = await s.open({ runBlocks: 8 })
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const cars = s.gateways[0]!.requests.filter(r => r.format === 'car')
    // runs of the root's bytes, one of them spanning two inner nodes (it carries both)
    expect(cars.every(r => r.path === `/ipfs/${cid.toString()}`)).toBe(true)
    expect(cars.some(r => (r.carBlocks ?? []).filter(c => inner.includes(c)).length === 2)).toBe(true)
    const { raw, car } = sentBlocks(s.gateways)
    const leaves = [...raw, ...car].filter(c => c.code === rawCodec.code).map(key)
    expect(leaves).toHaveLength(40)
    expect(new Set(leaves).size).toBe(40)
    // the root, the first inner node and the first 8 leaves come in the first CAR; the first run goes out
    // once the second inner node is in, before the walk reads further ahead
    const reqs = s.gateways[0]!.requests
    const order = reqs.map(r => r.format === 'car' ? 'car' : r.path.split('/')[2])
    expect(reqs[0]!.url).toContain(`entity-bytes=0:${2 * MiB - 1}`)
    expect(reqs[0]!.carBlocks?.slice(0, 2)).toEqual([cid.toString(), inner[0]])
    expect(order.slice(1, 3)).toEqual([inner[1], 'car'])
  })

  it('repeated content: the same leaves and the same inner nodes at several offsets are written at each of them as the runs deliver them', async () => {
    const blocks = new MemoryBlocks()
    // 2.5 MiB whose leaves 3 and 4 are the same (zeros), four times over: one inner node's CID at four offsets
    const pattern = seededBytes(10 * 256 * KiB, 31)
    pattern.fill(0, 3 * 256 * KiB, 5 * 256 * KiB)
    const data = new Uint8Array(4 * pattern.length)
    for (let i = 0; i < 4; i++) data.set(pattern, i * pattern.length)
    const cid = await addFile(blocks, data, { layout: balanced({ maxChildrenPerNode: 10 }) })
    const inner = dagPb.decode(blocks.get(cid)).Links.map(l => l.Hash.toString())
    expect(inner).toHaveLength(4)
    expect(new Set(inner).size).toBe(1)
    for (const runBlocks of [4, 16]) {
      const s = await setup(blocks)
      const dl = await s.open({ runBlocks })
      const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
      expect(done.status, done.error ?? '').toBe('success')
      expect(sha256(await readFile(done.output))).toBe(sha256(data))
      expect(s.gateways[0]!.requests.some(r => r.format === 'car')).toBe(true)
    }
  })

  it('a node that plans runs for its children, standing at two offsets: each run\'s leaves land at their own offset', async () => {
    const blocks = new MemoryBlocks()
    // R = [M, M] with M = [P1, P2], P1 and P2 nodes of 10 leaves of 256 KiB: M plans the runs of P1's and P2's leaves, at 0 and at 5 MiB
    const one = seededBytes(10 * 256 * KiB, 32)
    const two = seededBytes(10 * 256 * KiB, 33)
    const p1 = await addFile(blocks, one, { layout: balanced({ maxChildrenPerNode: 10 }) })
    const p2 = await addFile(blocks, two, { layout: balanced({ maxChildrenPerNode: 10 }) })
    const half = one.length + two.length
    const m = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [BigInt(one.length), BigInt(two.length)] }), [
      { Hash: p1, Tsize: one.length }, { Hash: p2, Tsize: two.length }
    ]), dagPb.code)
    const root = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [BigInt(half), BigInt(half)] }), [
      { Hash: m, Tsize: half }, { Hash: m, Tsize: half }
    ]), dagPb.code)
    const data = Buffer.concat([one, two, one, two])
    const s = await setup(blocks)
    const dl = await s.open({ runBlocks: 4 })
    const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    // runs are of M's bytes (planned from M); only the first request, with the root, is of the root's
    const [firstCar, ...runCars] = s.gateways[0]!.requests.filter(r => r.format === 'car')
    expect(firstCar?.path).toBe(`/ipfs/${root.toString()}`)
    expect(runCars.length).toBeGreaterThan(0)
    expect(runCars.every(r => r.path === `/ipfs/${m.toString()}`)).toBe(true)

    // nodes of 2 MiB (too small to be planned from above: each asks for its own runs) at several offsets: R2 = [Q1, Q2, Q1]
    const q1Bytes = seededBytes(8 * 256 * KiB, 34)
    const q2Bytes = seededBytes(8 * 256 * KiB, 35)
    const q1 = await addFile(blocks, q1Bytes, { layout: balanced({ maxChildrenPerNode: 8 }) })
    const q2 = await addFile(blocks, q2Bytes, { layout: balanced({ maxChildrenPerNode: 8 }) })
    const size = BigInt(q1Bytes.length)
    const root2 = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [size, size, size] }), [
      { Hash: q1, Tsize: q1Bytes.length }, { Hash: q2, Tsize: q2Bytes.length }, { Hash: q1, Tsize: q1Bytes.length }
    ]), dagPb.code)
    const done2 = await (await dl.add(root2.toString(), { output: join(s.dir, 'out2') })).done
    expect(done2.status, done2.error ?? '').toBe('success')
    expect(sha256(await readFile(done2.output))).toBe(sha256(Buffer.concat([q1Bytes, q2Bytes, q1Bytes])))
  })

  it('a gateway that does not serve CAR ranges is asked for single blocks, and once only for a CAR', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(3 * MiB, 22)
    const cid = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: 64 * KiB }) })
    const s = await setup(blocks)
    s.gateways[0]!.addFault({ fault: { type: 'status', status: 501 }, match: { format: 'car' } })
    // 48 leaves in runs of 4: 12 runs if every one were asked for
    const dl = await s.open({ runBlocks: 4 })
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const reqs = s.gateways[0]!.requests
    // the runs started before the first 501 came back fail too; after it no more are started
    const cars = reqs.filter(r => r.format === 'car').length
    expect(cars).toBeGreaterThanOrEqual(1)
    expect(cars).toBeLessThan(12)
    expect(new Set(reqs.filter(r => r.format === 'raw').map(r => r.path)).size).toBe(reqs.filter(r => r.format === 'raw').length)
  })

  it('a corrupt block in a CAR drops that gateway; the other gateway delivers the rest and no wrong byte is written', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(8 * MiB, 23)
    const cid = await addFile(blocks, data)
    const s = await setup(blocks, 2)
    const [liar, good] = s.gateways as [TestGateway, TestGateway]
    liar.addFault({ fault: { type: 'flip' }, match: { format: 'car' } })
    const dl = await s.open()
    const events: string[] = []
    dl.on('cidget:gateway', e => events.push(`${e.state} ${e.gateway}`))
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    expect(events).toContain(`dropped ${liar.url}`)
    const firstBad = liar.requests.find(r => r.fault === 'flip')!
    expect(liar.requests.filter(r => r.startedAt > firstBad.endedAt!)).toEqual([])
    expect(good.requests.length).toBeGreaterThan(0)
  })

  it('a CAR cut off mid-way: the leaves it delivered are kept, the rest are fetched one by one', async () => {
    const blocks = new MemoryBlocks()
    const { cid, data, leaves } = await sixteenLeaves(blocks)
    const s = await setup(blocks)
    const g = s.gateways[0]!
    // the root's node, two leaves and a bit: leaves 0 and 1 arrive whole, leaf 3 on cannot
    g.addFault({ fault: { type: 'reset', afterBytes: 600 * KiB }, match: { format: 'car' }, times: 1 })
    const dl = await s.open()
    const done = await (await dl.add(cid.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(sha256(data))
    const raw = sentBlocks([g]).raw.map(key)
    expect(raw).not.toContain(key(leaves[0]!))
    expect(raw).not.toContain(key(leaves[1]!))
    for (const leaf of leaves.slice(3)) expect(raw.filter(k => k === key(leaf))).toHaveLength(1)
  })
})

describe('hostile DAGs', () => {
  async function dirWith (blocks: MemoryBlocks, links: Array<{ name: string, cid: CID }>): Promise<CID> {
    return await put(blocks, pbNode(new UnixFS({ type: 'directory' }), links.map(l => ({ Name: l.name, Hash: l.cid, Tsize: 10 }))), dagPb.code)
  }

  async function expectRefused (blocks: MemoryBlocks, root: CID, code: string, init: DownloaderInit = {}): Promise<string> {
    const s = await setup(blocks)
    const dl = await s.open(init)
    const out = join(s.dir, 'out', 'tree')
    const done = await (await dl.add(root.toString(), { output: out })).done
    expect(done.status).toBe('failed')
    expect(done.errorCode).toBe(code)
    // nothing outside the output directory, and nothing at the final path
    expect((await readdir(s.dir)).filter(n => !n.startsWith('state.db'))).toEqual(['out'])
    expect((await tree(join(s.dir, 'out'))).every(p => p.startsWith('tree.cidget-partial'))).toBe(true)
    await expect(stat(out)).rejects.toThrow()
    return done.error ?? ''
  }

  it.each([['..'], ['../escape'], ['/etc/passwd'], ['a/b'], ['nul\0byte'], ['.']])('refuses the name %j', async (name) => {
    const blocks = new MemoryBlocks()
    const file = await put(blocks, new TextEncoder().encode('owned'), rawCodec.code)
    const root = await dirWith(blocks, [{ name: 'ok.txt', cid: file }, { name, cid: file }])
    const msg = await expectRefused(blocks, root, 'CIDGET_ERR_UNSAFE_NAME')
    expect(msg).toMatch(/Refusing name/)
  })

  it('refuses duplicate names', async () => {
    const blocks = new MemoryBlocks()
    const file = await put(blocks, new TextEncoder().encode('x'), rawCodec.code)
    const root = await dirWith(blocks, [{ name: 'same', cid: file }, { name: 'same', cid: file }])
    await expectRefused(blocks, root, 'CIDGET_ERR_UNSAFE_NAME')
  })

  it('refuses a symlink to /etc (or skips it with skipSymlinks), and writes a safe one as a link', async () => {
    const blocks = new MemoryBlocks()
    const evil = await put(blocks, pbNode(new UnixFS({ type: 'symlink', data: new TextEncoder().encode('/etc') })), dagPb.code)
    const up = await put(blocks, pbNode(new UnixFS({ type: 'symlink', data: new TextEncoder().encode('../../..') })), dagPb.code)
    const safe = await put(blocks, pbNode(new UnixFS({ type: 'symlink', data: new TextEncoder().encode('file.txt') })), dagPb.code)
    const file = await put(blocks, new TextEncoder().encode('content'), rawCodec.code)
    await expectRefused(blocks, await dirWith(blocks, [{ name: 'etc', cid: evil }]), 'CIDGET_ERR_UNSAFE_SYMLINK')
    await expectRefused(blocks, await dirWith(blocks, [{ name: 'up', cid: up }]), 'CIDGET_ERR_UNSAFE_SYMLINK')
    const root = await dirWith(blocks, [{ name: 'etc', cid: evil }, { name: 'file.txt', cid: file }, { name: 'link', cid: safe }])
    const s = await setup(blocks)
    const dl = await s.open({ skipSymlinks: true })
    const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await tree(join(s.dir, 'out'))).toEqual(['file.txt', 'link'])
    expect((await lstat(join(s.dir, 'out', 'link'))).isSymbolicLink()).toBe(true)
    expect(await readlink(join(s.dir, 'out', 'link'))).toBe('file.txt')
  })

  it('refuses a file that declares more than the size limit', async () => {
    const blocks = new MemoryBlocks()
    const leaf = await put(blocks, new Uint8Array(10), rawCodec.code)
    const huge = 2 ** 52
    const root = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [BigInt(huge)] }), [{ Hash: leaf, Tsize: 10 }]), dagPb.code)
    await expectRefused(blocks, root, 'CIDGET_ERR_DAG_LIMIT')
  })

  it('refuses a leaf whose size differs from what its parent declares', async () => {
    const blocks = new MemoryBlocks()
    const leaf = await put(blocks, new Uint8Array(10), rawCodec.code)
    const root = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [5n, 5n] }), [{ Hash: leaf, Tsize: 10 }, { Hash: leaf, Tsize: 10 }]), dagPb.code)
    await expectRefused(blocks, root, 'CIDGET_ERR_DAG_INVALID')
  })

  it('refuses a DAG deeper than the depth limit', async () => {
    const blocks = new MemoryBlocks()
    let cid = await put(blocks, new Uint8Array([1]), rawCodec.code)
    for (let i = 0; i < 40; i++) {
      cid = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [1n] }), [{ Hash: cid, Tsize: 1 }]), dagPb.code)
    }
    await expectRefused(blocks, cid, 'CIDGET_ERR_DAG_LIMIT', { limits: { maxDepth: 32 } })
  })

  it('refuses a tree of more entries than maxEntries (the root, every directory, file and link count)', async () => {
    const blocks = new MemoryBlocks()
    const text = (t: string): Uint8Array => new TextEncoder().encode(t)
    // six entries: the root, a, a/1, a/2, b, c
    const root = await addDirectory(blocks, [{ path: 'a/1', content: text('1') }, { path: 'a/2', content: text('2') }, { path: 'b', content: text('b') }, { path: 'c', content: text('c') }])
    expect(await expectRefused(blocks, root, 'CIDGET_ERR_DAG_LIMIT', { limits: { maxEntries: 5 } })).toMatch(/more than 5 entries/)
    const s = await setup(blocks)
    const done = await (await (await s.open({ limits: { maxEntries: 6 } })).add(root.toString(), { output: join(s.dir, 'ok') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await tree(join(s.dir, 'ok'))).toEqual(['a', 'a/1', 'a/2', 'b', 'c'])
  })

  it('refuses a sharded directory with more than maxEntries entries as it walks it (its shard nodes count too)', async () => {
    const blocks = new MemoryBlocks()
    const root = await addDirectory(blocks, Array.from({ length: 40 }, (_, i) => ({ path: `s/f${i}`, content: new TextEncoder().encode(String(i)) })),
      { shardSplitThresholdBytes: 1 })
    // a sharded directory is walked as its shard nodes come (it is not listed in memory first)
    expect(await expectRefused(blocks, root, 'CIDGET_ERR_DAG_LIMIT', { limits: { maxEntries: 30 } })).toMatch(/The DAG has more than 30 entries/)
    const s = await setup(blocks)
    const done = await (await (await s.open({ limits: { maxEntries: 45 } })).add(root.toString(), { output: join(s.dir, 'ok') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect((await tree(join(s.dir, 'ok'))).length).toBe(41)
  })

  it('writes sharded directories of any fanout, and refuses an entry not in the bucket its name hashes to (a second entry of one name cannot hide in another bucket)', async () => {
    const blocks = new MemoryBlocks()
    const text = (t: string): Uint8Array => new TextEncoder().encode(t)
    // fanout 16 (4 bits a level, several levels) and 2 (1 bit a level, deep): the bits are read as go-unixfs places them
    for (const bits of [4, 1]) {
      const root = await addDirectory(blocks, Array.from({ length: 200 }, (_, i) => ({ path: `n${i}`, content: text(`${bits}:${i}`) })),
        { shardSplitThresholdBytes: 1, shardFanoutBits: bits })
      const s = await setup(blocks)
      const done = await (await (await s.open()).add(root.toString(), { output: join(s.dir, 'ok') })).done
      expect(done.status, done.error ?? '').toBe('success')
      expect(await readFile(join(s.dir, 'ok', 'n123'), 'utf8')).toBe(`${bits}:123`)
    }
    // a shard node whose entry is renamed: same bucket, another name (one that hashes elsewhere)
    const root = await addDirectory(blocks, Array.from({ length: 40 }, (_, i) => ({ path: `f${i}`, content: text(String(i)) })), { shardSplitThresholdBytes: 1 })
    const node = dagPb.decode(blocks.get(root))
    const fs = UnixFS.unmarshal(node.Data!)
    const pad = (Number(fs.fanout) - 1).toString(16).length
    const at = node.Links.findIndex(l => (l.Name ?? '').length > pad)
    expect(at).toBeGreaterThanOrEqual(0)
    const moved = (node.Links[at]!.Name ?? '').slice(0, pad) + 'f0-elsewhere'
    const links = node.Links.map((l, i) => i === at ? { ...l, Name: moved } : l)
    const forged = await put(blocks, dagPb.encode(dagPb.prepare({ Data: node.Data, Links: links })), dagPb.code)
    expect(await expectRefused(blocks, forged, 'CIDGET_ERR_DAG_INVALID')).toMatch(/not in the bucket its name hashes to/)
  })

  it('counts a raw leaf\'s own level against the depth limit', async () => {
    const blocks = new MemoryBlocks()
    let cid = await put(blocks, new Uint8Array([1]), rawCodec.code)
    // 8 inner nodes: the root at depth 0, the leaf at depth 8
    for (let i = 0; i < 8; i++) {
      cid = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [1n] }), [{ Hash: cid, Tsize: 1 }]), dagPb.code)
    }
    expect(await expectRefused(blocks, cid, 'CIDGET_ERR_DAG_LIMIT', { limits: { maxDepth: 7 } })).toMatch(/deeper than 7 levels at bafkrei/)
    const s = await setup(blocks)
    const done = await (await (await s.open({ limits: { maxDepth: 8 } })).add(cid.toString(), { output: join(s.dir, 'ok') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect([...await readFile(join(s.dir, 'ok'))]).toEqual([1])
  })

  it('refuses a block over 2 MiB', async () => {
    const blocks = new MemoryBlocks()
    const big = await put(blocks, seededBytes(2 * MiB + 1), rawCodec.code)
    const msg = await expectRefused(blocks, big, 'CIDGET_ERR_BLOCK_TOO_LARGE')
    expect(msg).toMatch(/2 MiB|2097152|too large/i)
  })
})
