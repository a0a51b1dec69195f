import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarReader } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { exporter } from 'ipfs-unixfs-exporter'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isCidgetError } from '../../src/core/errors.js'
import {
  MemoryBlocks,
  addDirectory,
  addFile,
  loadCar,
  seededBytes,
  startTestGateway
} from '../../src/testing/index.js'
import type { RequestRecord, TestGateway } from '../../src/testing/index.js'
import { within } from '../helpers.js'

const FILE_SIZE = 300_000
const LEAF = 10_000

let blocks: MemoryBlocks
let gw: TestGateway
let data: Uint8Array
let fileCid: CID // 30 leaves, 4 links per node: a DAG three levels deep
let v0Cid: CID // CIDv0, dag-pb leaves
let dirCid: CID
let hamtCid: CID
const small = new TextEncoder().encode('hello, gateway\n')

beforeAll(async () => {
  blocks = new MemoryBlocks()
  data = seededBytes(FILE_SIZE, 7)
  fileCid = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: LEAF }), layout: balanced({ maxChildrenPerNode: 4 }) })
  v0Cid = await addFile(blocks, data.subarray(0, 50_000), { cidVersion: 0, rawLeaves: false, chunker: fixedSize({ chunkSize: LEAF }) })
  dirCid = await addDirectory(blocks, [
    { path: 'hello.txt', content: small },
    { path: 'sub/data.bin', content: data.subarray(0, 40_000) },
    { path: 'sub/nested/deep.txt', content: small },
    { path: 'empty' }
  ], { chunker: fixedSize({ chunkSize: LEAF }) })
  // Fan-out 4 and a tiny split threshold: several levels of HAMT shards.
  hamtCid = await addDirectory(blocks, Array.from({ length: 60 }, (_, i) => ({
    path: `f${i}.txt`, content: new TextEncoder().encode(`file number ${i}\n`)
  })), { shardSplitThresholdBytes: 1, shardFanoutBits: 2 })
  gw = await startTestGateway({ blocks, chunkSize: 16 * 1024 })
})

afterAll(async () => {
  await gw.close()
})

afterEach(() => {
  gw.clearFaults()
})

// --- helpers -------------------------------------------------------------------

interface Got { status: number, headers: Record<string, string | string[] | undefined>, body: Uint8Array }

async function get (path: string, opts: { method?: 'GET' | 'HEAD', headers?: Record<string, string>, url?: string } = {}): Promise<Got> {
  const res = await request(`${opts.url ?? gw.url}${path}`, { method: opts.method ?? 'GET', headers: opts.headers })
  const body = new Uint8Array(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

/** Reads a body chunk by chunk; returns how many bytes arrived and the error that ended it, if any. */
async function readAll (path: string, opts: { headers?: Record<string, string>, bodyTimeout?: number } = {}): Promise<{ bytes: Uint8Array, error: unknown }> {
  const res = await request(`${gw.url}${path}`, { headers: opts.headers, bodyTimeout: opts.bodyTimeout })
  const parts: Uint8Array[] = []
  let error: unknown
  try {
    for await (const chunk of res.body) parts.push(chunk as Uint8Array)
  } catch (err) {
    error = err
  }
  return { bytes: Buffer.concat(parts), error }
}

/** The record of the latest request, once its response has ended. */
async function lastRecord (gateway: TestGateway = gw): Promise<RequestRecord> {
  const record = gateway.requests.at(-1)
  if (record === undefined) throw new Error('no request recorded')
  while (record.endedAt === null) await once(gateway, 'response')
  return record
}

async function verifies (cid: CID, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code === identity.code) return Buffer.from(bytes).equals(Buffer.from(cid.multihash.digest))
  const digest = await sha256.digest(bytes)
  return Buffer.from(digest.digest).equals(Buffer.from(cid.multihash.digest))
}

async function readCar (bytes: Uint8Array): Promise<{ roots: CID[], blocks: Array<{ cid: CID, bytes: Uint8Array }> }> {
  const reader = await CarReader.fromBytes(bytes)
  const out: Array<{ cid: CID, bytes: Uint8Array }> = []
  for await (const block of reader.blocks()) out.push({ cid: block.cid, bytes: block.bytes })
  return { roots: await reader.getRoots(), blocks: out }
}

/** Every block reachable from `cid`, DFS pre-order, without duplicates. */
function dagBlocks (cid: CID, seen = new Set<string>(), out: string[] = []): string[] {
  if (seen.has(cid.toString())) return out
  seen.add(cid.toString())
  out.push(cid.toString())
  if (cid.code === dagPb.code) for (const link of dagPb.decode(blocks.get(cid)).Links) dagBlocks(link.Hash, seen, out)
  return out
}

async function carInto (bytes: Uint8Array): Promise<MemoryBlocks> {
  const store = new MemoryBlocks()
  await loadCar(store, bytes)
  return store
}

async function readRange (store: MemoryBlocks, cid: CID, offset: number, length: number): Promise<Uint8Array> {
  const entry = await exporter(cid, store.asBlockstore())
  if (entry.type !== 'file' && entry.type !== 'raw') throw new Error(`not a file: ${entry.type}`)
  const parts: Uint8Array[] = []
  for await (const chunk of entry.content({ offset, length })) parts.push(chunk)
  return Buffer.concat(parts)
}

const slice = (a: number, b: number): Buffer => Buffer.from(data.subarray(a, b))

// --- blocks.ts -----------------------------------------------------------------

describe('MemoryBlocks and builders', () => {
  it('stores, finds and counts blocks by multihash; identity CIDs are implicit', async () => {
    const store = new MemoryBlocks()
    const bytes = new TextEncoder().encode('x')
    const cid = CID.create(1, raw.code, await sha256.digest(bytes))
    expect(store.has(cid)).toBe(false)
    expect(() => store.get(cid)).toThrow(/not in the test blockstore/)
    try { store.get(cid) } catch (err) { expect(isCidgetError(err, 'CIDGET_ERR_NOT_FOUND')).toBe(true) }
    expect(store.put(cid, bytes)).toBe(cid)
    expect(store.size).toBe(1)
    expect(store.get(CID.createV1(0x70, cid.multihash))).toBe(bytes)
    const id = CID.create(1, raw.code, identity.digest(bytes))
    expect(store.has(id)).toBe(true)
    expect(Buffer.from(store.get(id)).toString()).toBe('x')
    expect(store.size).toBe(1)
  })

  it('seededBytes is deterministic, seed-dependent and handles odd sizes', () => {
    expect(Buffer.from(seededBytes(1001, 3)).equals(Buffer.from(seededBytes(1001, 3)))).toBe(true)
    expect(Buffer.from(seededBytes(64, 1)).equals(Buffer.from(seededBytes(64, 2)))).toBe(false)
    expect(seededBytes(7).length).toBe(7)
    expect(seededBytes(0).length).toBe(0)
    expect(Buffer.from(seededBytes(100, 0)).every((b) => b === 0)).toBe(false)
  })

  it('addFile accepts iterables and gives the same CID as for the bytes', async () => {
    const store = new MemoryBlocks()
    const chunks = [data.subarray(0, 1000), data.subarray(1000, 25_000)]
    const a = await addFile(store, data.subarray(0, 25_000), { chunker: fixedSize({ chunkSize: LEAF }) })
    const b = await addFile(store, chunks, { chunker: fixedSize({ chunkSize: LEAF }) })
    const c = await addFile(store, (async function * () { yield * chunks })(), { chunker: fixedSize({ chunkSize: LEAF }) })
    expect(b.equals(a)).toBe(true)
    expect(c.equals(a)).toBe(true)
  })

  it('loadCar reads a CAR from bytes and from a file, and rejects a corrupt block', async () => {
    const car = (await get(`/ipfs/${dirCid}?format=car`)).body
    const store = new MemoryBlocks()
    const roots = await loadCar(store, car)
    expect(roots.map(String)).toEqual([dirCid.toString()])
    expect(store.size).toBe(dagBlocks(dirCid).length)

    const dir = await mkdtemp(join(tmpdir(), 'cidget-gw-'))
    try {
      const file = join(dir, 'x.car')
      await writeFile(file, car)
      const fromFile = new MemoryBlocks()
      expect((await loadCar(fromFile, file)).map(String)).toEqual([dirCid.toString()])
      expect(fromFile.size).toBe(store.size)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }

    const bad = new Uint8Array(car)
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0xff
    await expect(loadCar(new MemoryBlocks(), bad)).rejects.toMatchObject({ code: 'CIDGET_ERR_HASH_MISMATCH' })
  })
})

// --- path gateway ----------------------------------------------------------------

describe('path gateway', () => {
  it('serves a whole file with the gateway headers', async () => {
    const res = await get(`/ipfs/${fileCid}`)
    expect(res.status).toBe(200)
    expect(Buffer.from(res.body).equals(Buffer.from(data))).toBe(true)
    expect(res.headers['content-type']).toBe('application/octet-stream')
    expect(res.headers['content-length']).toBe(String(FILE_SIZE))
    expect(res.headers['accept-ranges']).toBe('bytes')
    expect(res.headers.etag).toBe(`"${fileCid.toString()}"`)
    expect(res.headers['cache-control']).toBe('public, max-age=29030400, immutable')
    expect(res.headers['x-ipfs-path']).toBe(`/ipfs/${fileCid}`)
  })

  it('answers HEAD with the headers and no body', async () => {
    const res = await get(`/ipfs/${fileCid}`, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(res.headers['content-length']).toBe(String(FILE_SIZE))
    expect(res.headers.etag).toBe(`"${fileCid.toString()}"`)
    expect(res.body.length).toBe(0)
  })

  it('accepts CIDv0 and CIDv1 in other bases; the ETag names the CID as parsed', async () => {
    const v0 = await get(`/ipfs/${v0Cid}`)
    expect(v0.status).toBe(200)
    expect(v0.headers.etag).toBe(`"${v0Cid.toString()}"`)
    expect(Buffer.from(v0.body).equals(slice(0, 50_000))).toBe(true)
    for (const text of [fileCid.toString(base36), fileCid.toString(base58btc)]) {
      const res = await get(`/ipfs/${text}`, { method: 'HEAD' })
      expect(res.status).toBe(200)
      expect(res.headers.etag).toBe(`"${fileCid.toString()}"`)
    }
  })

  it.each([
    ['bytes=100-199', 100, 199],
    ['bytes=299990-', 299_990, FILE_SIZE - 1],
    ['bytes=-10', FILE_SIZE - 10, FILE_SIZE - 1],
    ['bytes=-999999', 0, FILE_SIZE - 1],
    ['bytes=299000-999999', 299_000, FILE_SIZE - 1],
    ['bytes=12345-12345', 12_345, 12_345]
  ])('answers Range %s with 206', async (range, start, end) => {
    const res = await get(`/ipfs/${fileCid}`, { headers: { range } })
    expect(res.status).toBe(206)
    expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${FILE_SIZE}`)
    expect(res.headers['content-length']).toBe(String(end - start + 1))
    expect(Buffer.from(res.body).equals(slice(start, end + 1))).toBe(true)
  })

  it.each(['bytes=300000-', 'bytes=400000-500000', 'bytes=-0'])('answers unsatisfiable Range %s with 416', async (range) => {
    const res = await get(`/ipfs/${fileCid}`, { headers: { range } })
    expect(res.status).toBe(416)
    expect(res.headers['content-range']).toBe(`bytes */${FILE_SIZE}`)
  })

  it.each(['bytes=0-1,5-6', 'bytes=abc', 'items=0-5', 'bytes=10-5'])('ignores a multi-range or malformed Range (%s): 200', async (range) => {
    const res = await get(`/ipfs/${fileCid}`, { headers: { range } })
    expect(res.status).toBe(200)
    expect(res.body.length).toBe(FILE_SIZE)
  })

  it('honours If-Range: the ETag gives 206, anything else 200 and the whole body', async () => {
    const etag = `"${fileCid.toString()}"`
    const match = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=10-19', 'if-range': etag } })
    expect(match.status).toBe(206)
    const mismatch = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=10-19', 'if-range': '"bafyother"' } })
    expect(mismatch.status).toBe(200)
    expect(mismatch.body.length).toBe(FILE_SIZE)
    const record = await lastRecord()
    expect(record.ifRange).toBe('"bafyother"')
  })

  it('resolves sub-paths in plain and HAMT-sharded directories', async () => {
    expect(Buffer.from((await get(`/ipfs/${dirCid}/hello.txt`)).body).equals(Buffer.from(small))).toBe(true)
    const rawLeafRange = await get(`/ipfs/${dirCid}/hello.txt`, { headers: { range: 'bytes=7-' } }) // a single raw block
    expect(rawLeafRange.status).toBe(206)
    expect(new TextDecoder().decode(rawLeafRange.body)).toBe('gateway\n')
    const deep = await get(`/ipfs/${dirCid}/sub/data.bin`, { headers: { range: 'bytes=39990-' } })
    expect(deep.status).toBe(206)
    expect(Buffer.from(deep.body).equals(slice(39_990, 40_000))).toBe(true)
    for (const i of [0, 17, 59]) {
      const res = await get(`/ipfs/${hamtCid}/f${i}.txt`)
      expect(res.status).toBe(200)
      expect(new TextDecoder().decode(res.body)).toBe(`file number ${i}\n`)
    }
    const escaped = await get(`/ipfs/${dirCid}/sub/nested/deep%2Etxt`)
    expect(escaped.status).toBe(200)
    expect((await lastRecord()).path).toBe(`/ipfs/${dirCid}/sub/nested/deep.txt`)
  })

  it('answers a directory with 501', async () => {
    const res = await get(`/ipfs/${dirCid}/sub`)
    expect(res.status).toBe(501)
  })

  it('serves identity CIDs: the trustless probe and inline content', async () => {
    const probe = await get('/ipfs/bafkqaaa', { method: 'HEAD' })
    expect(probe.status).toBe(200)
    const inline = CID.create(1, raw.code, identity.digest(small))
    const res = await get(`/ipfs/${inline}`)
    expect(res.status).toBe(200)
    expect(Buffer.from(res.body).equals(Buffer.from(small))).toBe(true)
    const asRaw = await get(`/ipfs/${inline}?format=raw`)
    expect(Buffer.from(asRaw.body).equals(Buffer.from(small))).toBe(true)
  })

  it('answers 404 for unknown content and paths, 400 for a bad CID, 405 for other methods', async () => {
    const unknown = CID.create(1, raw.code, await sha256.digest(new TextEncoder().encode('nobody has this')))
    expect((await get(`/ipfs/${unknown}`)).status).toBe(404)
    expect((await get(`/ipfs/${unknown}?format=raw`)).status).toBe(404)
    expect((await get(`/ipfs/${unknown}?format=car`)).status).toBe(404)
    expect((await get(`/ipfs/${dirCid}/missing.txt`)).status).toBe(404)
    expect((await get(`/ipfs/${dirCid}/hello.txt/deeper`)).status).toBe(404)
    expect((await get('/ipfs/not-a-cid')).status).toBe(400)
    expect((await get('/ipfs/')).status).toBe(400)
    expect((await get('/ipns/example.com')).status).toBe(404)
    expect((await get('/')).status).toBe(404)
    expect((await get(`/ipfs/${fileCid}?format=tar`)).status).toBe(400)
    const post = await request(`${gw.url}/ipfs/${fileCid}`, { method: 'POST', body: 'x' })
    await post.body.arrayBuffer()
    expect(post.statusCode).toBe(405)
  })

  it('answers 404 for a file whose root block is missing, and breaks the body when a leaf is missing', async () => {
    const store = new MemoryBlocks()
    const cid = await addFile(store, data.subarray(0, 100_000), { chunker: fixedSize({ chunkSize: LEAF }) })
    const links = dagPb.decode(store.get(cid)).Links
    const leaf = links[5]?.Hash
    if (leaf === undefined) throw new Error('expected leaves')
    store.delete(leaf)
    const gateway = await startTestGateway({ blocks: store })
    try {
      const res = await request(`${gateway.url}/ipfs/${cid}`)
      expect(res.statusCode).toBe(200)
      await expect(res.body.arrayBuffer()).rejects.toThrow()
      // A CAR stream stops abruptly after the blocks before the missing one.
      const car = await request(`${gateway.url}/ipfs/${cid}?format=car`)
      expect(car.statusCode).toBe(200)
      await expect(car.body.arrayBuffer()).rejects.toThrow()
      store.delete(cid)
      expect((await get(`/ipfs/${cid}`, { url: gateway.url })).status).toBe(404)
    } finally {
      await gateway.close()
    }
  })
})

// --- trustless gateway -------------------------------------------------------------

describe('trustless gateway', () => {
  it('serves raw blocks whose bytes hash to their CID (format=raw and Accept)', async () => {
    const cids = dagBlocks(fileCid).slice(0, 4).map((s) => CID.parse(s))
    for (const cid of cids) {
      const res = await get(`/ipfs/${cid}?format=raw`)
      expect(res.status).toBe(200)
      expect(res.headers['content-type']).toBe('application/vnd.ipld.raw')
      expect(res.headers.etag).toBe(`"${cid.toString()}.raw"`)
      expect(res.headers['content-length']).toBe(String(res.body.length))
      expect(await verifies(cid, res.body)).toBe(true)
    }
    const viaAccept = await get(`/ipfs/${v0Cid}`, { headers: { accept: 'application/vnd.ipld.raw' } })
    expect(viaAccept.headers['content-type']).toBe('application/vnd.ipld.raw')
    expect(await verifies(v0Cid, viaAccept.body)).toBe(true)
    expect((await lastRecord()).format).toBe('raw')
    expect((await get('/ipfs/bafkqaaa?format=raw', { method: 'HEAD' })).status).toBe(200)
  })

  it('refuses a path with format=raw', async () => {
    expect((await get(`/ipfs/${dirCid}/hello.txt?format=raw`)).status).toBe(400)
  })

  it('streams a CAR of the whole DAG by default, DFS, without duplicates', async () => {
    const res = await get(`/ipfs/${fileCid}?format=car`)
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    expect(res.headers['content-length']).toBeUndefined()
    expect(String(res.headers.etag)).toMatch(new RegExp(`^"${fileCid.toString()}\\.car\\.`))
    const car = await readCar(res.body)
    expect(car.roots.map(String)).toEqual([fileCid.toString()])
    expect(car.blocks.map((b) => b.cid.toString())).toEqual(dagBlocks(fileCid))
    for (const b of car.blocks) expect(await verifies(b.cid, b.bytes)).toBe(true)
    const store = await carInto(res.body)
    expect(Buffer.from(await readRange(store, fileCid, 0, FILE_SIZE)).equals(Buffer.from(data))).toBe(true)
  })

  it('honours dag-scope=block, entity and all, by Accept too', async () => {
    const block = await readCar((await get(`/ipfs/${fileCid}?dag-scope=block`, { headers: { accept: 'application/vnd.ipld.car' } })).body)
    expect(block.blocks.map((b) => b.cid.toString())).toEqual([fileCid.toString()])

    const fileEntity = await readCar((await get(`/ipfs/${fileCid}?format=car&dag-scope=entity`)).body)
    expect(fileEntity.blocks.length).toBe(dagBlocks(fileCid).length)

    // A plain directory's entity is the directory node alone.
    const dirEntity = await readCar((await get(`/ipfs/${dirCid}?format=car&dag-scope=entity`)).body)
    expect(dirEntity.blocks.map((b) => b.cid.toString())).toEqual([dirCid.toString()])
    const dirAll = await readCar((await get(`/ipfs/${dirCid}?format=car&dag-scope=all`)).body)
    expect(dirAll.blocks.length).toBe(dagBlocks(dirCid).length)

    // A HAMT directory's entity: every shard node, no file.
    const hamtEntity = await readCar((await get(`/ipfs/${hamtCid}?format=car&dag-scope=entity`)).body)
    expect(hamtEntity.blocks.length).toBeGreaterThan(1)
    for (const b of hamtEntity.blocks) {
      expect(b.cid.code).toBe(dagPb.code)
      const node = dagPb.decode(b.bytes)
      expect(node.Data).toBeDefined()
      expect(UnixFS.unmarshal(node.Data ?? new Uint8Array()).type).toBe('hamt-sharded-directory')
    }
    const hamtAll = await readCar((await get(`/ipfs/${hamtCid}?format=car`)).body)
    expect(hamtAll.blocks.length).toBe(hamtEntity.blocks.length + 60)

    expect((await get(`/ipfs/${fileCid}?format=car&dag-scope=everything`)).status).toBe(400)
  })

  it('includes the blocks of the path, HAMT shards too, before the terminal entity', async () => {
    const res = await get(`/ipfs/${dirCid}/sub/data.bin?format=car&dag-scope=entity`)
    const car = await readCar(res.body)
    expect(car.roots.map(String)).toEqual([dirCid.toString()])
    expect(car.blocks[0]?.cid.toString()).toBe(dirCid.toString())
    const store = await carInto(res.body)
    const entry = await exporter(`${dirCid}/sub/data.bin`, store.asBlockstore())
    expect(entry.type).toBe('file')
    expect(Buffer.from(await readRange(store, entry.cid, 0, 40_000)).equals(slice(0, 40_000))).toBe(true)

    const hamt = await get(`/ipfs/${hamtCid}/f42.txt?format=car&dag-scope=block`)
    const hamtCar = await readCar(hamt.body)
    expect(hamtCar.blocks.length).toBeGreaterThan(2) // root shard, sub-shard(s), the file
    const hamtStore = await carInto(hamt.body)
    const file = await exporter(`${hamtCid}/f42.txt`, hamtStore.asBlockstore())
    expect(new TextDecoder().decode(await readRange(hamtStore, file.cid, 0, 100))).toBe('file number 42\n')
  })

  it.each([
    ['0:0', 0, 1],
    ['150000:150099', 150_000, 100],
    ['-10:*', FILE_SIZE - 10, 10],
    ['295000:-1', 295_000, 4_999],
    ['0:*', 0, FILE_SIZE],
    ['299999:999999', 299_999, 1]
  ])('limits a file CAR to entity-bytes=%s (IPIP-402)', async (param, offset, length) => {
    const res = await get(`/ipfs/${fileCid}?format=car&entity-bytes=${param}&dag-scope=all`)
    expect(res.status).toBe(200)
    const car = await readCar(res.body)
    const store = await carInto(res.body)
    expect(Buffer.from(await readRange(store, fileCid, offset, length)).equals(slice(offset, offset + length))).toBe(true)
    const leaves = car.blocks.filter((b) => b.cid.code === raw.code).length
    expect(leaves).toBe(Math.ceil((offset + length) / LEAF) - Math.floor(offset / LEAF))
  })

  it('answers entity-bytes outside the file with 400, a malformed one with 400, an empty one like dag-scope=block', async () => {
    expect((await get(`/ipfs/${fileCid}?format=car&entity-bytes=300000:*`)).status).toBe(400)
    expect((await get(`/ipfs/${fileCid}?format=car&entity-bytes=a:b`)).status).toBe(400)
    const empty = await readCar((await get(`/ipfs/${fileCid}?format=car&entity-bytes=100:50`)).body)
    expect(empty.blocks.map((b) => b.cid.toString())).toEqual([fileCid.toString()])
  })

  it('answers HEAD for a CAR with headers only', async () => {
    const res = await get(`/ipfs/${fileCid}?format=car`, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/vnd\.ipld\.car/)
    expect(res.body.length).toBe(0)
  })
})

// --- faults -----------------------------------------------------------------------

describe('faults', () => {
  it('reset: the client gets exactly afterBytes bytes, then an error', async () => {
    gw.addFault({ fault: { type: 'reset', afterBytes: 20_000 } })
    const { bytes, error } = await readAll(`/ipfs/${fileCid}`)
    expect(error).toBeDefined()
    expect(bytes.length).toBe(20_000)
    expect(Buffer.from(bytes).equals(slice(0, 20_000))).toBe(true)
    const record = await lastRecord()
    expect(record).toMatchObject({ fault: 'reset', aborted: true, bytesSent: 20_000, status: 200 })

    // afterBytes counts bytes of this (ranged) body; 0 means right after the headers.
    gw.setFaults([{ fault: { type: 'reset', afterBytes: 0 } }])
    const zero = await readAll(`/ipfs/${fileCid}`, { headers: { range: 'bytes=1000-' } })
    expect(zero.error).toBeDefined()
    expect(zero.bytes.length).toBe(0)
  })

  it('reset on a CAR breaks the stream', async () => {
    gw.addFault({ fault: { type: 'reset', afterBytes: 5_000 }, match: { format: 'car' } })
    const { bytes, error } = await readAll(`/ipfs/${fileCid}?format=car`)
    expect(error).toBeDefined()
    expect(bytes.length).toBe(5_000)
  })

  it('stall: the client idle timeout fires after afterBytes bytes', async () => {
    gw.addFault({ fault: { type: 'stall', afterBytes: 30_000 } })
    const started = performance.now()
    const { bytes, error } = await readAll(`/ipfs/${fileCid}`, { bodyTimeout: 200 })
    expect(performance.now() - started).toBeGreaterThanOrEqual(190)
    expect((error as { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT')
    expect(bytes.length).toBe(30_000)
    const record = await lastRecord()
    expect(record).toMatchObject({ fault: 'stall', aborted: true, bytesSent: 30_000 })
  })

  it('close() does not hang on a stalled response', async () => {
    const gateway = await startTestGateway({ blocks })
    gateway.addFault({ fault: { type: 'stall', afterBytes: 100 } })
    const res = await request(`${gateway.url}/ipfs/${fileCid}`)
    const reading = res.body.arrayBuffer().catch((err: unknown) => err)
    while (gateway.requests[0]?.bytesSent !== 100) await once(gateway, 'progress')
    // a stalled response never ends by itself: the bound tells "closed it" from "waits for it"
    await within(10_000, gateway.close(), 'close() still waits for the stalled response')
    expect(await reading).toBeInstanceOf(Error)
    expect(gateway.requests[0]?.aborted).toBe(true)
  })

  it('flip: exactly one byte differs, at atByte or in the middle', async () => {
    gw.addFault({ fault: { type: 'flip', atByte: 12_345 }, times: 1 })
    const at = await get(`/ipfs/${fileCid}`)
    const diffs = (body: Uint8Array, start = 0): number[] => [...body].flatMap((b, i) => b === data[start + i] ? [] : [i])
    expect(diffs(at.body)).toEqual([12_345])
    expect(at.body[12_345]).toBe((data[12_345] ?? 0) ^ 0xff)
    expect((await lastRecord()).fault).toBe('flip')

    gw.addFault({ fault: { type: 'flip' }, times: 1 })
    const ranged = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=1000-1999' } })
    expect(diffs(ranged.body, 1000)).toEqual([500])

    // The stored block is untouched.
    expect(Buffer.from((await get(`/ipfs/${fileCid}`)).body).equals(Buffer.from(data))).toBe(true)
  })

  it('flip on a raw block and a CAR: the data no longer matches its CID', async () => {
    const leaf = CID.parse(dagBlocks(fileCid).at(-1) ?? '')
    gw.addFault({ fault: { type: 'flip' }, match: { format: 'raw' }, times: 1 })
    expect(await verifies(leaf, (await get(`/ipfs/${leaf}?format=raw`)).body)).toBe(false)

    gw.addFault({ fault: { type: 'flip' }, match: { format: 'car' }, times: 1 })
    const car = await readCar((await get(`/ipfs/${fileCid}?format=car`)).body)
    const bad = []
    for (const b of car.blocks) if (!(await verifies(b.cid, b.bytes))) bad.push(b.cid.toString())
    expect(bad.length).toBe(1)
  })

  it('ignore-range: a Range request gets 200 and the whole body', async () => {
    gw.addFault({ fault: { type: 'ignore-range' } })
    const res = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=100-' } })
    expect(res.status).toBe(200)
    expect(res.headers['content-range']).toBeUndefined()
    expect(res.body.length).toBe(FILE_SIZE)
  })

  it('ignore-scope: every CAR carries the path\'s blocks and the terminal block only, whatever dag-scope asked', async () => {
    gw.addFault({ fault: { type: 'ignore-scope' } })
    const all = await get(`/ipfs/${dirCid}?format=car&dag-scope=all`)
    expect(all.status).toBe(200)
    expect((await readCar(all.body)).blocks.map((b) => b.cid.toString())).toEqual([dirCid.toString()])
    expect(await lastRecord()).toMatchObject({ fault: 'ignore-scope', carBlocks: [dirCid.toString()] })
    const entity = await readCar((await get(`/ipfs/${fileCid}?format=car&dag-scope=entity&entity-bytes=0:*`)).body)
    expect(entity.blocks.map((b) => b.cid.toString())).toEqual([fileCid.toString()])
    // through a path: the directory's node, then the file's root alone
    const pathed = await readCar((await get(`/ipfs/${dirCid}/sub/data.bin?format=car`)).body)
    expect(pathed.blocks[0]?.cid.toString()).toBe(dirCid.toString())
    expect(pathed.blocks.length).toBe(3)
    for (const b of [...entity.blocks, ...pathed.blocks]) expect(await verifies(b.cid, b.bytes)).toBe(true)
    // not a CAR request: served as usual, no fault recorded
    expect(await verifies(fileCid, (await get(`/ipfs/${fileCid}?format=raw`)).body)).toBe(true)
    expect((await lastRecord()).fault).toBeNull()
  })

  it('range-not-satisfiable: 416 with Content-Range bytes */SIZE', async () => {
    gw.addFault({ fault: { type: 'range-not-satisfiable' } })
    const res = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=100-' } })
    expect(res.status).toBe(416)
    expect(res.headers['content-range']).toBe(`bytes */${FILE_SIZE}`)
  })

  it('status: the status, Retry-After in seconds or as a date', async () => {
    gw.setFaults([{ fault: { type: 'status', status: 503, retryAfter: 2 }, times: 1 }])
    const a = await get(`/ipfs/${fileCid}`)
    expect(a.status).toBe(503)
    expect(a.headers['retry-after']).toBe('2')
    const date = new Date(Date.now() + 5000).toUTCString()
    gw.setFaults([{ fault: { type: 'status', status: 429, retryAfter: date }, times: 1 }])
    const b = await get(`/ipfs/${fileCid}`)
    expect(b.status).toBe(429)
    expect(b.headers['retry-after']).toBe(date)
    gw.setFaults([{ fault: { type: 'status', status: 502 }, times: 1 }])
    const c = await get(`/ipfs/${fileCid}`)
    expect(c.status).toBe(502)
    expect(c.headers['retry-after']).toBeUndefined()
  })

  it('wrong-block: raw and CAR answers carry bytes that do not match the CID', async () => {
    gw.addFault({ fault: { type: 'wrong-block' } })
    const path = await get(`/ipfs/${fileCid}`) // does not apply to the path gateway
    expect(Buffer.from(path.body).equals(Buffer.from(data))).toBe(true)
    expect((await lastRecord()).fault).toBeNull()

    const res = await get(`/ipfs/${fileCid}?format=raw`)
    expect(res.status).toBe(200)
    expect(await verifies(fileCid, res.body)).toBe(false)
    expect(Number(res.headers['content-length'])).toBe(res.body.length)
    const car = await readCar((await get(`/ipfs/${fileCid}?format=car&dag-scope=block`)).body)
    expect(car.blocks[0]?.cid.toString()).toBe(fileCid.toString())
    expect(await verifies(fileCid, car.blocks[0]?.bytes ?? new Uint8Array())).toBe(false)

    // With a single block in the store, the block is mutated instead.
    const lone = new MemoryBlocks()
    const cid = await addFile(lone, small)
    const gateway = await startTestGateway({ blocks: lone })
    try {
      gateway.addFault({ fault: { type: 'wrong-block' } })
      const body = (await get(`/ipfs/${cid}?format=raw`, { url: gateway.url })).body
      expect(body.length).toBe(small.length)
      expect(await verifies(cid, body)).toBe(false)
    } finally {
      await gateway.close()
    }
  })

  it('throttle: one response is slowed down, the next is not', async () => {
    gw.addFault({ fault: { type: 'throttle', bytesPerSecond: 10 * 1024 }, times: 1 })
    const started = performance.now()
    const slow = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=0-4095' } })
    expect(slow.body.length).toBe(4096)
    // 4 KiB at 10 KiB/s, less the limiter's 100 ms burst: a lower bound, which load cannot break
    expect(performance.now() - started).toBeGreaterThanOrEqual(250)
    expect((await lastRecord()).fault).toBe('throttle')
    // the whole file would take half a minute at that rate; unthrottled it takes milliseconds, so
    // 10 s tells the two apart with room for a loaded machine
    const fast = await within(10_000, get(`/ipfs/${fileCid}`), 'the second response is still throttled')
    expect(fast.body.length).toBe(FILE_SIZE)
    expect((await lastRecord()).fault).toBeNull()
  })

  it('latency: the headers come after the delay', async () => {
    gw.addFault({ fault: { type: 'latency', ms: 150 }, times: 1 })
    const started = performance.now()
    const res = await get(`/ipfs/${fileCid}`, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(performance.now() - started).toBeGreaterThanOrEqual(140)
  })

  it('refuse: the connection is destroyed without a response', async () => {
    gw.addFault({ fault: { type: 'refuse' }, times: 1 })
    await expect(get(`/ipfs/${fileCid}`)).rejects.toThrow()
    const record = await lastRecord()
    expect(record).toMatchObject({ fault: 'refuse', aborted: true, status: 0, bytesSent: 0 })
    expect((await get(`/ipfs/${fileCid}`, { method: 'HEAD' })).status).toBe(200)
  })

  it('no-length: chunked transfer encoding, same bytes', async () => {
    gw.addFault({ fault: { type: 'no-length' } })
    const res = await get(`/ipfs/${fileCid}`)
    expect(res.headers['content-length']).toBeUndefined()
    expect(res.headers['transfer-encoding']).toBe('chunked')
    expect(Buffer.from(res.body).equals(Buffer.from(data))).toBe(true)
  })

  it('endless: no length, the body, then zero bytes until the client goes away', async () => {
    gw.addFault({ fault: { type: 'endless' }, times: 1 })
    const res = await request(`${gw.url}/ipfs/${fileCid}`)
    expect(res.headers['content-length']).toBeUndefined()
    const want = data.byteLength + 3 * 65536
    const parts: Uint8Array[] = []
    let got = 0
    for await (const chunk of res.body) {
      parts.push(chunk as Uint8Array)
      got += (chunk as Uint8Array).byteLength
      if (got >= want) break // leaving the loop destroys the body: the client goes away
    }
    const body = Buffer.concat(parts)
    expect(body.subarray(0, data.byteLength).equals(Buffer.from(data))).toBe(true)
    expect(body.subarray(data.byteLength).every(b => b === 0)).toBe(true)
    expect(await lastRecord()).toMatchObject({ fault: 'endless', aborted: true })
  })

  it('bad-content-range: 206 whose Content-Range start is off by one', async () => {
    gw.addFault({ fault: { type: 'bad-content-range' } })
    const res = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=1000-1999' } })
    expect(res.status).toBe(206)
    expect(res.headers['content-range']).toBe(`bytes 999-1998/${FILE_SIZE}`)
    expect(Buffer.from(res.body).equals(slice(1000, 2000))).toBe(true)
    const fromZero = await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=0-99' } })
    expect(fromZero.headers['content-range']).toBe(`bytes 1-100/${FILE_SIZE}`)
    // Without a Range header the fault does not apply.
    expect((await get(`/ipfs/${fileCid}`, { method: 'HEAD' })).status).toBe(200)
  })

  it('times=K applies to the first K matching requests only', async () => {
    gw.addFault({ fault: { type: 'status', status: 500 }, times: 2, match: { method: 'HEAD' } })
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await get(`/ipfs/${fileCid}`, { method: 'HEAD' })).status)
    expect(statuses).toEqual([500, 500, 200, 200])
  })

  it('probability with a seed gives the same faults on every run', async () => {
    const run = async (): Promise<number[]> => {
      gw.setFaults([{ fault: { type: 'status', status: 503 }, probability: 0.5, seed: 42 }])
      const statuses = []
      for (let i = 0; i < 16; i++) statuses.push((await get(`/ipfs/${fileCid}`, { method: 'HEAD' })).status)
      return statuses
    }
    const first = await run()
    expect(await run()).toEqual(first)
    expect(first).toContain(503)
    expect(first).toContain(200)
  })

  it('match narrows by method, format, path and ranged; the first applicable rule wins', async () => {
    gw.setFaults([
      { fault: { type: 'status', status: 418 }, match: { path: /hello\.txt$/ } },
      { fault: { type: 'status', status: 429 }, match: { format: 'raw' } },
      { fault: { type: 'status', status: 503 }, match: { ranged: true, method: 'get' } }
    ])
    expect((await get(`/ipfs/${dirCid}/hello.txt`)).status).toBe(418)
    expect((await get(`/ipfs/${fileCid}?format=raw`)).status).toBe(429)
    expect((await get(`/ipfs/${fileCid}`, { headers: { range: 'bytes=0-1' } })).status).toBe(503)
    expect((await get(`/ipfs/${fileCid}`, { method: 'HEAD', headers: { range: 'bytes=0-1' } })).status).toBe(206)
    expect((await get(`/ipfs/${fileCid}`)).status).toBe(200)
    gw.setFaults([{ fault: { type: 'status', status: 500 }, match: { path: `/ipfs/${fileCid}` } }])
    expect((await get(`/ipfs/${fileCid}`)).status).toBe(500)
    expect((await get(`/ipfs/${v0Cid}`, { method: 'HEAD' })).status).toBe(200)
  })

  it('match.query: only requests that carry those query parameters with those values', async () => {
    gw.setFaults([{ fault: { type: 'status', status: 503 }, match: { format: 'car', query: { 'dag-scope': 'all' } } }])
    expect((await get(`/ipfs/${dirCid}?format=car&dag-scope=all`)).status).toBe(503)
    expect((await get(`/ipfs/${dirCid}?dag-scope=all&format=car&entity-bytes=0:*`)).status).toBe(503)
    expect((await get(`/ipfs/${dirCid}?format=car&dag-scope=entity`)).status).toBe(200)
    // the parameter must be there: a CAR without dag-scope (all by default) is not matched
    expect((await get(`/ipfs/${dirCid}?format=car`)).status).toBe(200)
    expect((await get(`/ipfs/${fileCid}?format=raw&dag-scope=all`)).status).toBe(200)
  })

  it('refuses invalid rules', () => {
    expect(() => gw.addFault({ fault: { type: 'throttle', bytesPerSecond: 0 } })).toThrow(/bytesPerSecond/)
    expect(() => gw.addFault({ fault: { type: 'status', status: 42 } })).toThrow(/status/)
    expect(() => gw.addFault({ fault: { type: 'reset', afterBytes: 1 }, probability: 2 })).toThrow(/probability/)
    expect(() => gw.setMaxBytesPerSecond(-1)).toThrow(/maxBytesPerSecond/)
  })
})

// --- records, events, bandwidth -----------------------------------------------------

describe('records and events', () => {
  it('records every request with its outcome, and emits request → progress → response', async () => {
    const events: string[] = []
    const onRequest = (r: RequestRecord): void => { events.push(`request:${r.id}`) }
    const onProgress = (r: RequestRecord): void => { if (events.at(-1) !== `progress:${r.id}`) events.push(`progress:${r.id}`) }
    const onResponse = (r: RequestRecord): void => { events.push(`response:${r.id}`) }
    gw.on('request', onRequest)
    gw.on('progress', onProgress)
    gw.on('response', onResponse)
    try {
      const before = gw.requests.length
      const started = Date.now()
      await get(`/ipfs/${fileCid}?x=%20y`, { headers: { range: 'bytes=0-49999' } })
      const record = await lastRecord()
      expect(gw.requests.length).toBe(before + 1)
      expect(record).toMatchObject({
        id: before + 1,
        method: 'GET',
        url: `/ipfs/${fileCid}?x=%20y`,
        path: `/ipfs/${fileCid}`,
        format: 'path',
        range: 'bytes=0-49999',
        ifRange: null,
        status: 206,
        bytesSent: 50_000,
        fault: null,
        aborted: false
      })
      expect(record.startedAt).toBeGreaterThanOrEqual(started - 5)
      expect(record.endedAt).toBeGreaterThanOrEqual(record.startedAt)
      expect(events).toEqual([`request:${record.id}`, `progress:${record.id}`, `response:${record.id}`])
      const ids = gw.requests.map((r) => r.id)
      expect(ids).toEqual([...ids].sort((x, y) => x - y))
    } finally {
      gw.off('request', onRequest)
      gw.off('progress', onProgress)
      gw.off('response', onResponse)
    }
  })

  it('bytesSent sums body bytes, optionally filtered', async () => {
    const gateway = await startTestGateway({ blocks })
    try {
      await get(`/ipfs/${fileCid}`, { url: gateway.url })
      await get(`/ipfs/${fileCid}?format=raw`, { url: gateway.url, headers: { range: 'bytes=0-9' } })
      await lastRecord(gateway)
      expect(gateway.bytesSent()).toBe(FILE_SIZE + 10)
      expect(gateway.bytesSent((r) => r.format === 'raw')).toBe(10)
    } finally {
      await gateway.close()
    }
  })

  it('stops sending when the client goes away (backpressure, no buffering)', async () => {
    const store = new MemoryBlocks()
    const size = 32 << 20
    const cid = await addFile(store, seededBytes(size, 9))
    const gateway = await startTestGateway({ blocks: store })
    try {
      const res = await request(`${gateway.url}/ipfs/${cid}`)
      for await (const _chunk of res.body) break // read one chunk, then destroy the connection
      const record = await lastRecord(gateway)
      expect(record.aborted).toBe(true)
      expect(record.bytesSent).toBeLessThan(size)
    } finally {
      await gateway.close()
    }
  })
})

describe('bandwidth', () => {
  it('maxBytesPerSecond is a lower bound on transfer time, shared by all connections', async () => {
    const gateway = await startTestGateway({ blocks, maxBytesPerSecond: 1024 * 1024 })
    try {
      let started = performance.now()
      const res = await get(`/ipfs/${fileCid}`, { url: gateway.url, headers: { range: 'bytes=0-204799' } })
      expect(res.body.length).toBe(200 * 1024)
      expect(performance.now() - started).toBeGreaterThanOrEqual(150)

      // Two connections of 100 KiB each share the same 1 MiB/s.
      started = performance.now()
      await Promise.all([
        get(`/ipfs/${fileCid}`, { url: gateway.url, headers: { range: 'bytes=0-102399' } }),
        get(`/ipfs/${fileCid}`, { url: gateway.url, headers: { range: 'bytes=102400-204799' } })
      ])
      expect(performance.now() - started).toBeGreaterThanOrEqual(150)

      // lifted from a rate at which the whole file would take five minutes: 10 s tells the two apart
      // with room for a loaded machine
      gateway.setMaxBytesPerSecond(1024)
      gateway.setMaxBytesPerSecond(undefined)
      const whole = await within(10_000, get(`/ipfs/${fileCid}`, { url: gateway.url }), 'the cap is still in force')
      expect(whole.body.length).toBe(FILE_SIZE)
    } finally {
      await gateway.close()
    }
  })
})
