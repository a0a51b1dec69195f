/**
 * Tree streams in verified mode: a directory or HAMT shard asked for as one
 * CAR of its whole DAG (`dag-scope=all`). Each test checks the output file by
 * file against the source, and what crossed the wire in the gateways' records.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, readdir, readFile, readlink, rm, lstat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 as mhSha256 } from 'multiformats/hashes/sha2'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { MemoryBlocks, addDirectory, seededBytes, type TestGateway, type RequestRecord, type FaultRule } from '../../src/testing/index.js'
import { Downloader, type DownloaderInit } from '../../src/engine/downloader.js'
import { sha256, KiB, MiB, gatewaySetup, type GatewaySetup } from '../helpers.js'

interface Entry { path: string, content?: Uint8Array, symlink?: string }

type Setup = GatewaySetup

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function setup (blocks: MemoryBlocks, n = 1): Promise<Setup> {
  return await gatewaySetup(blocks, n, (c) => { cleanups.push(c) }, { prefix: 'cidget-trees-', defaults: { timeoutMs: 5_000 } })
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** `count` small files named f0… under `dir`, each of its own bytes (`dir/f7` holds "dir/f7\n"). */
function smallFiles (dir: string, count: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({ path: `${dir}/f${i}`, content: text(`${dir}/f${i}\n`) }))
}

async function put (blocks: MemoryBlocks, bytes: Uint8Array): Promise<CID> {
  const cid = CID.createV1(dagPb.code, await mhSha256.digest(bytes))
  blocks.put(cid, bytes)
  return cid
}

/**
 * The tree of `entries` (files, empty directories) built by the importer, with
 * the `symlink` entries added to its root directory (the importer makes none).
 */
async function build (blocks: MemoryBlocks, entries: Entry[], opts: Parameters<typeof addDirectory>[2] = {}): Promise<CID> {
  const plain = await addDirectory(blocks, entries.filter(e => e.symlink === undefined), opts)
  const links = entries.filter(e => e.symlink !== undefined)
  if (links.length === 0) return plain
  const node = dagPb.decode(blocks.get(plain))
  const added: dagPb.PBLink[] = []
  for (const l of links) {
    if (l.path.includes('/')) throw new Error('symlinks are added to the root only')
    const bytes = dagPb.encode(dagPb.prepare({ Data: new UnixFS({ type: 'symlink', data: text(l.symlink ?? '') }).marshal() }))
    added.push({ Name: l.path, Hash: await put(blocks, bytes), Tsize: bytes.length })
  }
  return await put(blocks, dagPb.encode(dagPb.prepare({ Data: node.Data, Links: [...node.Links, ...added] })))
}

/** Everything under `dir`, as relative paths. */
async function listing (dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (at: string): Promise<void> => {
    for (const e of await readdir(at, { withFileTypes: true })) {
      out.push(join(at, e.name).slice(dir.length + 1))
      if (e.isDirectory()) await walk(join(at, e.name))
    }
  }
  await walk(dir)
  return out.sort()
}

/** Every path `entries` makes: their own and their parents'. */
function expectedPaths (entries: Entry[]): string[] {
  const paths = new Set<string>()
  for (const e of entries) {
    const parts = e.path.split('/')
    for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join('/'))
  }
  return [...paths].sort()
}

/** The output is exactly the tree: the same paths, each file's bytes, each symlink's target, each empty directory a directory. */
async function expectTree (out: string, entries: Entry[]): Promise<void> {
  expect(await listing(out)).toEqual(expectedPaths(entries))
  for (const e of entries) {
    const at = join(out, e.path)
    if (e.symlink !== undefined) {
      expect((await lstat(at)).isSymbolicLink(), e.path).toBe(true)
      expect(await readlink(at)).toBe(e.symlink)
    } else if (e.content !== undefined) {
      const got = await readFile(at)
      expect(got.byteLength, e.path).toBe(e.content.byteLength)
      expect(sha256(got), e.path).toBe(sha256(e.content))
    } else {
      expect((await lstat(at)).isDirectory(), e.path).toBe(true)
    }
  }
}

/** The requests for the whole DAG of something (tree streams). */
function treeRequests (g: TestGateway): RequestRecord[] {
  return g.requests.filter(r => r.format === 'car' && r.url.includes('dag-scope=all'))
}

/** Fault rules' match for the CAR requests of tree streams only. */
const TREE_CARS = { format: 'car', query: { 'dag-scope': 'all' } } as const

/** Bytes of every block of the DAG of `root` (each once): about what a CAR of it carries. */
function dagBytes (blocks: MemoryBlocks, root: CID, seen = new Set<string>()): number {
  const key = root.toString()
  if (seen.has(key)) return 0
  seen.add(key)
  const bytes = blocks.get(root)
  if (root.code !== dagPb.code) return bytes.byteLength
  return dagPb.decode(bytes).Links.reduce((n, l) => n + dagBytes(blocks, l.Hash, seen), bytes.byteLength)
}

async function get (s: Setup, root: CID, init: DownloaderInit = {}): Promise<string> {
  const dl = await s.open(init)
  const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
  expect(done.status, done.error ?? '').toBe('success')
  return done.output
}

/** A tree of every kind: small and multi-MiB files, empty files, nested and empty directories, safe symlinks. */
function mixed (): Entry[] {
  return [
    { path: 'readme.txt', content: text('hello\n') },
    { path: 'media/big.bin', content: seededBytes(3 * MiB + 17, 1) },
    { path: 'media/bigger.bin', content: seededBytes(5 * MiB, 2) },
    { path: 'media/empty.bin', content: new Uint8Array(0) },
    { path: 'docs/a/b/c/deep.txt', content: text('deep\n') },
    { path: 'docs/a/empty.txt', content: new Uint8Array(0) },
    ...smallFiles('docs/many', 200),
    { path: 'empty-dir' },
    { path: 'docs/a/b/empty-too' },
    { path: 'to-big', symlink: 'media/big.bin' },
    { path: 'to-docs', symlink: 'docs/a' }
  ]
}

/** A root, a tree CAR, maybe a block or two: never one per file. */
const FEW = 10

/** Fetches `entries` built into a tree from one gateway, checks them file by file, and that few requests did it: the gateway. */
async function fetchedInFew (entries: Entry[], opts: Parameters<typeof addDirectory>[2] = {}): Promise<TestGateway> {
  const blocks = new MemoryBlocks()
  const root = await build(blocks, entries, opts)
  const s = await setup(blocks)
  await expectTree(await get(s, root), entries)
  const g = s.gateways[0]!
  expect(treeRequests(g).length).toBeGreaterThanOrEqual(1)
  expect(g.requests.length).toBeLessThan(FEW)
  return g
}

describe('tree streams: a whole tree in a handful of requests', () => {

  it('a flat directory of 1,000 files', async () => {
    const g = await fetchedInFew(smallFiles('flat', 1_000))
    expect(g.requests.filter(r => r.format === 'raw').length).toBeLessThan(FEW)
  })

  it('nested directories', async () => {
    const blocks = new MemoryBlocks()
    const entries: Entry[] = []
    for (const a of ['a', 'b', 'c']) {
      for (const b of ['x', 'y', 'z']) entries.push(...smallFiles(`${a}/${b}`, 40), ...smallFiles(`${a}/${b}/deeper/still`, 10))
      entries.push({ path: `${a}/top.txt`, content: text(a) })
    }
    const root = await build(blocks, entries)
    const s = await setup(blocks)
    await expectTree(await get(s, root), entries)
    const g = s.gateways[0]!
    expect(entries.length).toBeGreaterThan(400)
    expect(treeRequests(g).length).toBeGreaterThanOrEqual(1)
    expect(g.requests.length).toBeLessThan(FEW)
  })

  async function sharded (blocks: MemoryBlocks): Promise<{ root: CID, entries: Entry[] }> {
    const entries = [...smallFiles('shard', 2_000), { path: 'readme.txt', content: text('a sharded directory\n') }]
    // 'shard' (2,000 names) is over the threshold, the root (2 names) is not
    const root = await build(blocks, entries, { shardSplitThresholdBytes: 1000 })
    const link = dagPb.decode(blocks.get(root)).Links.find(l => l.Name === 'shard')!
    const shard = dagPb.decode(blocks.get(link.Hash))
    expect(UnixFS.unmarshal(shard.Data!).type).toBe('hamt-sharded-directory')
    return { root, entries }
  }

  it('a HAMT-sharded directory of 2,000 entries', async () => {
    const blocks = new MemoryBlocks()
    const { root, entries } = await sharded(blocks)
    const s = await setup(blocks)
    await expectTree(await get(s, root), entries)
    const g = s.gateways[0]!
    expect(treeRequests(g).length).toBeGreaterThanOrEqual(1)
    expect(g.requests.length).toBeLessThan(FEW)
  })

  it('the same sharded directory at 30 ms a request: the same few requests', async () => {
    const blocks = new MemoryBlocks()
    const { root, entries } = await sharded(blocks)
    const s = await setup(blocks)
    const g = s.gateways[0]!
    g.addFault({ fault: { type: 'latency', ms: 30 } })
    await expectTree(await get(s, root), entries)
    expect(g.requests.every(r => r.fault === 'latency')).toBe(true)
    expect(treeRequests(g).length).toBeGreaterThanOrEqual(1)
    expect(g.requests.length).toBeLessThan(FEW)
  })

  it('multi-MiB files, empty files, empty directories and safe symlinks, written exactly', async () => {
    const blocks = new MemoryBlocks()
    const entries = mixed()
    const root = await build(blocks, entries)
    const g = await fetchedInFew(entries)
    // the 8 MiB of leaves came in the tree's CAR, not a second time: the only block sent twice is the
    // root (with the first request, and as the head of the tree's CAR)
    const sent = g.requests.flatMap(r => r.format === 'car' ? r.carBlocks ?? [] : [r.path.split('/')[2]!])
    expect(new Set(sent.filter((c, i) => sent.indexOf(c) !== i))).toEqual(new Set([root.toString()]))
  })
})

describe('tree streams: faults on one of two gateways', () => {
  /** The mixed tree from two gateways, the first with `rules`; checks the tree and returns the setup and the gateway events. */
  async function withFaults (rules: FaultRule[], init: DownloaderInit = {}): Promise<{ s: Setup, bad: TestGateway, good: TestGateway, events: string[] }> {
    const blocks = new MemoryBlocks()
    const entries = mixed()
    const root = await build(blocks, entries)
    const s = await setup(blocks, 2)
    const [bad, good] = s.gateways as [TestGateway, TestGateway]
    bad.setFaults(rules)
    const dl = await s.open(init)
    const events: string[] = []
    dl.on('cidget:gateway', e => events.push(`${e.state} ${e.gateway}`))
    const done = await (await dl.add(root.toString(), { output: join(s.dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    await expectTree(done.output, entries)
    return { s, bad, good, events }
  }

  it('ignore-scope: the gateway is not asked for a tree again after its first', async () => {
    const { bad } = await withFaults([{ fault: { type: 'ignore-scope' } }])
    const trees = treeRequests(bad)
    expect(trees.length).toBeGreaterThanOrEqual(1)
    expect(trees[0]!.fault).toBe('ignore-scope')
    expect(trees).toHaveLength(1)
  })

  it('reset halfway through the tree CAR: the rest comes from the other gateway', async () => {
    const { bad, good } = await withFaults([{ fault: { type: 'reset', afterBytes: 4 * MiB }, match: TREE_CARS }])
    const cut = treeRequests(bad)
    expect(cut.length).toBeGreaterThanOrEqual(1)
    expect(cut[0]).toMatchObject({ fault: 'reset', aborted: true })
    expect(good.requests.length).toBeGreaterThan(0)
  })

  it('a flipped byte inside the tree CAR: that gateway is dropped, no wrong byte written', async () => {
    const { bad, good, events } = await withFaults([{ fault: { type: 'flip' }, match: TREE_CARS }])
    const flipped = bad.requests.find(r => r.fault === 'flip')
    expect(flipped).toBeDefined()
    expect(events).toContain(`dropped ${bad.url}`)
    expect(bad.requests.filter(r => r.startedAt > flipped!.endedAt!)).toEqual([])
    expect(good.requests.length).toBeGreaterThan(0)
  })

  it('a tree CAR that stalls halfway: stopped after a few hedge delays, the rest from the other gateway', async () => {
    const started = performance.now()
    const { bad, good } = await withFaults([{ fault: { type: 'stall', afterBytes: 4 * MiB }, match: TREE_CARS }], { hedgeAfterMs: 20, timeoutMs: 1_000 })
    const stalled = bad.requests.find(r => r.fault === 'stall')
    expect(stalled).toBeDefined()
    expect(stalled!.aborted).toBe(true)
    expect(good.requests.length).toBeGreaterThan(0)
    // not waited out: well below the request timeout twice over
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})

describe('tree streams: several gateways', () => {
  it('a sharded tree larger than one stream takes (16 MiB) is spread: each of four gateways streams a share of its sub-shards', async () => {
    const blocks = new MemoryBlocks()
    const entries = Array.from({ length: 1100 }, (_, i) => ({ path: `f${i}.bin`, content: seededBytes(16 * KiB, 500 + i) }))
    const root = await build(blocks, entries, { shardSplitThresholdBytes: 1 })
    const s = await setup(blocks, 4)
    await expectTree(await get(s, root), entries)
    const shares = s.gateways.map(g => treeRequests(g).length)
    const total = shares.reduce((a, b) => a + b, 0)
    // one stream per sub-shard (a few hundred), not one per file, and every gateway has its share
    expect(total).toBeLessThan(entries.length / 2)
    for (const n of shares) expect(n, JSON.stringify(shares)).toBeGreaterThanOrEqual(total / 6)
  })
})

describe('tree streams: streams started ahead of the walk', () => {
  it('subtrees of thousands of small blocks streamed ahead of the walk come whole from their streams: nothing block by block', async () => {
    const blocks = new MemoryBlocks()
    // a file over the 16 MiB window keeps the root from coming in one stream: its directories are streamed ahead, each of 2,500 files
    const entries = [...smallFiles('a', 2500), ...smallFiles('b', 2500), ...smallFiles('c', 2500), { path: 'big.bin', content: seededBytes(17 * MiB, 3) }]
    const root = await build(blocks, entries)
    const s = await setup(blocks, 2)
    await expectTree(await get(s, root), entries)
    // alone: only the big file's own node (its leaves come in runs), none of the directories' blocks
    const raw = s.gateways.flatMap(g => g.requests.filter(r => r.format === 'raw'))
    expect(raw.filter(r => r.path.startsWith('/ipfs/bafkrei')).map(r => r.path)).toEqual([])
    expect(raw.length).toBeLessThanOrEqual(1)
    const streams = s.gateways.flatMap(g => treeRequests(g))
    expect(streams.length).toBeGreaterThanOrEqual(3)
    expect(streams.every(r => !r.aborted)).toBe(true)
  })
})

describe('tree streams: one gateway', () => {
  it.each([[400], [406], [415], [501]])('a gateway that answers a tree CAR with %i is not asked for one again; the tree comes block by block', async (status) => {
    const blocks = new MemoryBlocks()
    const entries = mixed()
    const root = await build(blocks, entries)
    const s = await setup(blocks)
    const g = s.gateways[0]!
    g.addFault({ fault: { type: 'status', status }, match: TREE_CARS })
    await expectTree(await get(s, root), entries)
    // the root's stream was refused; its subdirectories asked for none
    expect(treeRequests(g).map(r => r.status)).toEqual([status])
    expect(g.requests.filter(r => r.status === 200).length).toBeGreaterThan(10)
  })

  it('a tree CAR cut once: the tree still completes, block by block or in new streams', async () => {
    const blocks = new MemoryBlocks()
    const entries = mixed()
    const root = await build(blocks, entries)
    const s = await setup(blocks)
    const g = s.gateways[0]!
    g.addFault({ fault: { type: 'reset', afterBytes: Math.floor(dagBytes(blocks, root) / 2) }, match: TREE_CARS, times: 1 })
    await expectTree(await get(s, root), entries)
    expect(treeRequests(g)[0]).toMatchObject({ fault: 'reset', aborted: true })
    // what the cut stream brought is not asked for again: no subtree it entered comes whole a second
    // time, no run carries leaves it holds (the bytes sent stay near the tree's once, not 1.5 times)
    expect(g.bytesSent()).toBeLessThan(dagBytes(blocks, root) * 1.15)
  })
})

describe('tree streams: what a hostile CAR costs', () => {
  it('blocks out of the DAG and blocks twice cost only bytes: the stream is cut past what the tree declares, the tree comes block by block', async () => {
    const blocks = new MemoryBlocks()
    const entries = smallFiles('d', 50)
    const root = await build(blocks, entries)
    // a gateway of its own: 32 MiB of valid blocks that belong to no DAG, then every block of the tree twice
    const junk: Array<{ cid: CID, bytes: Uint8Array }> = []
    for (let i = 0; i < 2048; i++) {
      const bytes = seededBytes(16 * KiB, 10_000 + i)
      junk.push({ cid: CID.createV1(0x55, await mhSha256.digest(bytes)), bytes })
    }
    const { CarWriter } = await import('@ipld/car/writer')
    let carBytes = 0
    let rawRequests = 0
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const cid = CID.parse(url.pathname.split('/')[2] ?? '')
      if (url.searchParams.get('format') === 'raw') {
        rawRequests++
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' }).end(blocks.get(cid))
        return
      }
      if (url.searchParams.get('dag-scope') !== 'all') {
        res.writeHead(400).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.car; version=1' })
      const { writer, out } = CarWriter.create([cid])
      void (async () => {
        for (const b of junk) await writer.put(b)
        for (const [c, bytes] of blocks.entries()) {
          await writer.put({ cid: c, bytes })
          await writer.put({ cid: c, bytes })
        }
        await writer.close()
      })().catch(() => {})
      void (async () => {
        for await (const chunk of out) {
          carBytes += chunk.length
          if (!res.write(chunk)) await once(res, 'drain').catch(() => {})
          if (res.destroyed) return
        }
        res.end()
      })()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const dir = await mkdtemp(join(tmpdir(), 'cidget-trees-'))
    const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [url], hedgeAfterMs: 0, timeoutMs: 5_000 })
    cleanups.push(async () => {
      await dl.close()
      server.closeAllConnections()
      server.close()
      await rm(dir, { recursive: true, force: true })
    })
    const done = await (await dl.add(root.toString(), { output: join(dir, 'out') })).done
    expect(done.status, done.error ?? '').toBe('success')
    await expectTree(done.output, entries)
    // the tree declares about 50 KiB: its stream is cut a little past 1 MiB (1.25 × that, and 1 MiB of room),
    // long before the 32 MiB of blocks out of the DAG end (the server got as far as the sockets' buffers
    // let it), and the gateway is not asked for another; what the stream never brought came block by block
    expect(carBytes).toBeLessThan(16 * MiB)
    expect(rawRequests).toBeGreaterThanOrEqual(entries.length)
  })
})
