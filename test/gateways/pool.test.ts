import { once } from 'node:events'
import * as dagPb from '@ipld/dag-pb'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CidgetError } from '../../src/core/errors.js'
import { HttpClient } from '../../src/gateways/http.js'
import { GatewayPool, type GatewayPoolInit, type GatewayStats, type PoolEvent } from '../../src/gateways/pool.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway } from '../../src/testing/index.js'
import type { Fault, TestGateway } from '../../src/testing/index.js'
import { fakeTime, within } from '../helpers.js'

let blocks: MemoryBlocks
let root: CID
/** Every block of the file, from the importer's output. */
let all: Array<[CID, Uint8Array]>
let http: HttpClient
/** No timeout ends a request in the tests that use it: only the pool can (hedge, abort). */
let patient: HttpClient
let open: TestGateway[] = []

beforeAll(async () => {
  blocks = new MemoryBlocks()
  // 24 leaves of 8 KB under a balanced tree of 6 links per node: 24 + 4 + 1 blocks, three levels.
  root = await addFile(blocks, seededBytes(24 * 8000, 11), { chunker: fixedSize({ chunkSize: 8000 }), layout: balanced({ maxChildrenPerNode: 6 }) })
  all = [...blocks.entries()]
  http = new HttpClient({ timeoutMs: 200 })
  patient = new HttpClient({ timeoutMs: 120_000 })
})

afterAll(async () => {
  await http.close()
  await patient.close()
})

afterEach(async () => {
  await Promise.all(open.map(async (g) => { await g.close() }))
  open = []
})

/** Starts `faults.length` gateways over `store`; each entry is the fault applied to every request (or none). */
async function gateways (faults: Array<Fault | null>, store: MemoryBlocks = blocks): Promise<TestGateway[]> {
  const started = await Promise.all(faults.map(async (fault) => {
    const gw = await startTestGateway({ blocks: store })
    if (fault !== null) gw.addFault({ fault })
    return gw
  }))
  open.push(...started)
  return started
}

function pool (gws: TestGateway[], init: Partial<GatewayPoolInit> = {}): { pool: GatewayPool, events: PoolEvent[] } {
  const events: PoolEvent[] = []
  const p = new GatewayPool({
    gateways: gws.map((g) => g.url),
    http,
    backoff: { initialMs: 20, maxMs: 100 },
    onEvent: (e) => events.push(e),
    ...init
  })
  return { pool: p, events }
}

function statsOf (p: GatewayPool, gw: TestGateway): GatewayStats {
  const s = p.stats().find((x) => x.url === gw.url)
  if (s === undefined) throw new Error(`no stats for ${gw.url}`)
  return s
}

/** Fetches the whole DAG from `root` through the pool, level by level, decoding dag-pb nodes for their links. */
async function walk (p: GatewayPool, from: CID): Promise<Map<string, Uint8Array>> {
  const got = new Map<string, Uint8Array>()
  let level = [from]
  while (level.length > 0) {
    const fetched = await Promise.all(level.map(async (cid) => [cid, await p.get(cid)] as const))
    level = []
    for (const [cid, bytes] of fetched) {
      got.set(cid.toString(), bytes)
      if (cid.code === dagPb.code) level.push(...dagPb.decode(bytes).Links.map((l) => l.Hash))
    }
  }
  return got
}

async function rejection (promise: Promise<unknown>): Promise<CidgetError> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CidgetError)
  return err as CidgetError
}

/** The importer's leaf size: 256 KiB. */
const LEAF = 256 * 1024

/** A file of `leafCount` leaves of 256 KiB under one root, in a store of its own. */
async function fileOfLeaves (leafCount: number, seed: number): Promise<{ store: MemoryBlocks, data: Uint8Array, file: CID, leaves: CID[] }> {
  const store = new MemoryBlocks()
  const data = seededBytes(leafCount * LEAF, seed)
  const file = await addFile(store, data)
  const leaves = dagPb.decode(store.get(file)).Links.map((l) => l.Hash)
  return { store, data, file, leaves }
}

/** Highest number of requests open at once over `gws` (and per gateway), from the gateways' own events. */
function concurrencyProbe (gws: TestGateway[]): { max: () => number, maxPer: () => number } {
  let now = 0
  let max = 0
  let maxPer = 0
  for (const gw of gws) {
    let mine = 0
    gw.on('request', () => {
      now++
      mine++
      max = Math.max(max, now)
      maxPer = Math.max(maxPer, mine)
    })
    gw.on('response', () => {
      now--
      mine--
    })
  }
  return { max: () => max, maxPer: () => maxPer }
}

describe('GatewayPool', () => {
  it('with a wrong-block, a truncating, a stalling and a good gateway: only verified blocks; the liar dropped for good', async () => {
    const [wrong, reset, stall, good] = await gateways([
      { type: 'wrong-block' },
      { type: 'reset', afterBytes: 100 },
      { type: 'stall', afterBytes: 0 },
      null
    ]) as [TestGateway, TestGateway, TestGateway, TestGateway]
    const { pool: p, events } = pool([wrong, reset, stall, good], { concurrency: 8, perGatewayConcurrency: 4, hedgeAfterMs: 100 })

    const got = await walk(p, root)
    expect(got.size).toBe(all.length)
    for (const [cid, bytes] of all) expect(got.get(cid.toString())).toEqual(bytes)

    const w = statsOf(p, wrong)
    expect(w.dropped).toBe(true)
    expect(w.invalidBlocks).toBeGreaterThanOrEqual(1)
    expect(w.successes).toBe(0)
    expect(w.reliability).toBe(0)
    // Asked only in the first wave, before its first invalid block came back.
    expect(wrong.requests.length).toBeLessThanOrEqual(4)
    expect(events.filter((e) => e.type === 'gateway' && e.state === 'dropped').map((e) => e.type === 'gateway' && e.gateway)).toEqual([wrong.url])

    expect(statsOf(p, reset).errors).toBeGreaterThan(0)
    expect(statsOf(p, reset).dropped).toBe(false)
    expect(statsOf(p, stall).dropped).toBe(false)
    expect(statsOf(p, good).successes).toBeGreaterThan(0)
    expect(events.some((e) => e.type === 'retry')).toBe(true)

    // Never asked again: a second pass over every block leaves the dropped gateway alone.
    wrong.requests.length = 0
    const again = await Promise.all(all.map(async ([cid]) => await p.get(cid)))
    expect(again.length).toBe(all.length)
    expect(wrong.requests.length).toBe(0)
  })

  it('spreads load over every good gateway', async () => {
    const [a, b] = await gateways([{ type: 'latency', ms: 20 }, { type: 'latency', ms: 20 }]) as [TestGateway, TestGateway]
    const { pool: p } = pool([a, b], { hedgeAfterMs: 0 })
    await Promise.all(all.map(async ([cid]) => await p.get(cid)))
    expect(a.requests.length).toBeGreaterThanOrEqual(5)
    expect(b.requests.length).toBeGreaterThanOrEqual(5)
    expect(a.requests.length + b.requests.length).toBe(all.length)
    for (const s of p.stats()) {
      expect(s.reliability).toBe(1)
      expect(s.latencyMs).toBeGreaterThan(0)
      // blocks of 8 KB measure round trips, not bandwidth: they do not count towards throughput
      expect(s.throughputBps).toBe(0)
      expect(s.inFlight).toBe(0)
    }
    expect(p.stats().reduce((n, s) => n + s.bytes, 0)).toBe(all.reduce((n, [, bytes]) => n + bytes.length, 0))
  })

  it('spreads CAR runs started in one turn over every gateway, and each leaf\'s get() takes its block from its run', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(16, 31)
    const gws = await gateways([null, null, null, null], store)
    const { pool: p } = pool(gws, { hedgeAfterMs: 0 })
    const signal = new AbortController().signal
    for (let r = 0; r < 8; r++) {
      expect(p.prefetchRun(file, { from: 2 * r * LEAF, to: 2 * (r + 1) * LEAF - 1 }, leaves.slice(2 * r, 2 * r + 2), signal)).toBe(true)
    }
    const got = await Promise.all(leaves.map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true)
    for (const gw of gws) {
      expect(gw.requests.map((r) => r.format)).toEqual(['car', 'car'])
    }
  })

  it('end game: a gateway left idle takes the second half of a slow run; the slow one stops after its half, no leaf comes twice', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(16, 37)
    const [fast, slow] = await gateways([null, null], store) as [TestGateway, TestGateway]
    slow.setMaxBytesPerSecond(2 * 1024 * 1024) // the long run alone would take 1.75 s from it
    const { pool: p, events } = pool([fast, slow])
    const signal = new AbortController().signal
    const sizes = (n: number): number[] => new Array<number>(n).fill(LEAF)
    // runs go to the gateway with the fewest runs: the short one to `fast`, the long one to `slow`
    expect(p.prefetchRun(file, { from: 0, to: 2 * LEAF - 1, sizes: sizes(2) }, leaves.slice(0, 2), signal)).toBe(true)
    expect(p.prefetchRun(file, { from: 2 * LEAF, to: 16 * LEAF - 1, sizes: sizes(14) }, leaves.slice(2), signal)).toBe(true)
    const got = await Promise.all(leaves.map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true)

    // the idle gateway took over the tail of the slow run, as ranges of their own
    expect(events).toContainEqual(expect.objectContaining({ type: 'hedge', from: slow.url, to: fast.url }))
    const fastRanges = fast.requests.map((r) => new URL(r.url, fast.url).searchParams.get('entity-bytes'))
    expect(fastRanges[0]).toBe(`0:${2 * LEAF - 1}`)
    expect(fastRanges.length).toBeGreaterThan(1)
    // `slow` was asked once, for the whole run, and stopped early (its stream cut by cidget, not penalised)
    expect(slow.requests.map((r) => r.format)).toEqual(['car'])
    const [cut] = slow.requests
    if (cut !== undefined && cut.endedAt === null) await once(slow, 'response')
    expect(cut?.aborted).toBe(true)
    expect(cut?.bytesSent).toBeLessThan(14 * LEAF)
    expect(statsOf(p, slow)).toMatchObject({ errors: 0, dropped: false, inFlight: 0 })
    // every leaf delivered exactly once, by one gateway or the other
    const delivered = events.filter((e) => e.type === 'block').map((e) => e.type === 'block' ? e.cid : '')
    expect(delivered.sort()).toEqual(leaves.map((c) => c.toString()).sort())
    // a block event made a string (a listener that forwards it) keeps its CID
    const first = events.find((e) => e.type === 'block')
    if (first?.type !== 'block') throw new Error('no block event')
    expect(JSON.parse(JSON.stringify(first))).toEqual({ type: 'block', cid: first.cid, gateway: first.gateway, bytes: LEAF, ms: expect.any(Number) })
    expect(statsOf(p, fast).bytes + statsOf(p, slow).bytes).toBe(data.length)
  })

  it('end game: a gateway whose last run failed (404) is not handed the rest of another\'s run', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(16, 59)
    const [b, a] = await gateways([null, null], store) as [TestGateway, TestGateway]
    const { pool: p } = pool([b, a])
    const signal = new AbortController().signal
    const all16 = async (): Promise<void> => {
      const got = await Promise.all(leaves.map(async (cid) => await p.get(cid)))
      expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true)
    }
    // `b` serves a run (it is known to serve CAR ranges); `a` is not used yet
    p.prefetchRun(file, { from: 0, to: 16 * LEAF - 1, sizes: new Array<number>(16).fill(LEAF) }, leaves, signal)
    await all16()
    expect(a.requests).toHaveLength(0)
    // now `b` answers 404 to CAR requests and `a` is slow: `b` is idle at once, `a` streams its run for a while
    b.addFault({ fault: { type: 'status', status: 404 }, match: { format: 'car' } })
    a.setMaxBytesPerSecond(4 * 1024 * 1024)
    const before = b.requests.length
    p.prefetchRun(file, { from: 0, to: 8 * LEAF - 1, sizes: new Array<number>(8).fill(LEAF) }, leaves.slice(0, 8), signal)
    p.prefetchRun(file, { from: 8 * LEAF, to: 16 * LEAF - 1, sizes: new Array<number>(8).fill(LEAF) }, leaves.slice(8), signal)
    await all16()
    expect(b.requests.slice(before).filter((r) => r.format === 'car').map((r) => r.status)).toEqual([404])
    expect(a.requests.filter((r) => r.format === 'car')).toHaveLength(1)
  })

  it('a gateway that ignores entity-bytes: its run is cut off past what the range can hold, then it is asked block by block', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(64, 67) // 16 MiB
    const [gw] = await gateways([{ type: 'ignore-range' }], store) as [TestGateway]
    const { pool: p, events } = pool([gw])
    const signal = new AbortController().signal
    expect(p.prefetchRun(file, { from: 0, to: 16 * LEAF - 1 }, leaves.slice(0, 16), signal)).toBe(true)
    const got = await Promise.all(leaves.slice(0, 16).map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(got).equals(Buffer.from(data.subarray(0, 16 * LEAF)))).toBe(true)
    const [car, ...rest] = gw.requests
    expect(car?.format).toBe('car')
    if (car !== undefined && car.endedAt === null) await once(gw, 'response')
    expect(car?.aborted).toBe(true)
    expect(car?.bytesSent).toBeLessThan(data.length) // not the whole entity
    expect(rest.every((r) => r.format === 'raw')).toBe(true)
    expect(events).toContainEqual(expect.objectContaining({ type: 'gateway', gateway: gw.url, reason: expect.stringContaining('does not serve CAR entity ranges') as unknown }))
    expect(p.prefetchRun(file, { from: 16 * LEAF, to: 32 * LEAF - 1 }, leaves.slice(16, 32), signal)).toBe(false)
  })

  it('the entity stream keeps at most twice its range: what a gateway sends beyond that is asked for again when needed', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(32, 71) // 8 MiB
    const [gw] = await gateways([{ type: 'ignore-range' }], store) as [TestGateway]
    const { pool: p } = pool([gw])
    const stream = p.prefetchEntity(file, { from: 0, to: 4 * LEAF - 1, nodes: 1 }, new AbortController().signal)
    for (const leaf of leaves.slice(0, 4)) stream?.expect(leaf)
    await p.get(file)
    const first = await Promise.all(leaves.slice(0, 4).map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(first).equals(Buffer.from(data.subarray(0, 4 * LEAF)))).toBe(true)
    const [car] = gw.requests
    if (car !== undefined && car.endedAt === null) await once(gw, 'response')
    expect(car?.carBlocks).toHaveLength(33) // it sent the whole file
    // kept: less than 2 MiB with the root (fewer than 8 leaves); the leaves after those are asked for again
    const before = gw.requests.length
    const rest = await Promise.all(leaves.slice(4).map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(rest).equals(Buffer.from(data.subarray(4 * LEAF)))).toBe(true)
    const asked = gw.requests.slice(before).map((r) => r.path.split('/')[2])
    expect(asked.length).toBeGreaterThan(24)
    expect(asked.sort()).toEqual(leaves.slice(32 - asked.length).map((c) => c.toString()).sort())
  })

  it('a slow entity stream holds no block longer than a hedge delay: the rest is asked of another gateway, and the stream is cut', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(16, 73)
    const [slow, fast] = await gateways([null, null], store) as [TestGateway, TestGateway]
    // a leaf every 0.25 s, steadily: the whole stream would take 4 s
    slow.addFault({ fault: { type: 'throttle', bytesPerSecond: 1024 * 1024 }, match: { format: 'car' } })
    const { pool: p } = pool([slow, fast], { hedgeAfterMs: 400 })
    const stream = p.prefetchEntity(file, { from: 0, to: data.length - 1 }, new AbortController().signal)
    for (const leaf of leaves) stream?.expect(leaf)
    await p.get(file)
    const got = await Promise.all(leaves.map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true)
    // the leaves the stream had not brought in time came from the other gateway, asked for one by one
    expect(fast.requests.filter((r) => r.format === 'raw').length).toBeGreaterThanOrEqual(4)
    const [car] = slow.requests
    if (car !== undefined && car.endedAt === null) await once(slow, 'response')
    expect(car?.aborted).toBe(true)
    expect(car?.bytesSent).toBeLessThan(data.length)
  })

  it('the entity stream is not waited for once it brings nothing for a hedge delay: the block is asked of another gateway', async () => {
    const { store, data, file } = await fileOfLeaves(4, 61)
    const [stalled, good] = await gateways([null, null], store) as [TestGateway, TestGateway]
    stalled.addFault({ fault: { type: 'stall', afterBytes: 0 }, match: { format: 'car' } })
    // no timeout ends the stalled stream here (two minutes): only the hedge can get the block sooner
    const { pool: p } = pool([stalled, good], { http: patient, hedgeAfterMs: 30 })
    const stream = p.prefetchEntity(file, { from: 0, to: data.length - 1 }, new AbortController().signal)
    expect(stream).toBeDefined()
    expect(dagPb.decode(await within(20_000, p.get(file), 'the block still waits for the stalled stream')).Links.length).toBeGreaterThan(0)
    const [car] = stalled.requests
    const [raw] = good.requests
    expect(car?.format).toBe('car')
    expect(raw?.format).toBe('raw')
    // the stream, waited for by nobody then, was cut by the pool (no timeout would end it before two minutes)
    if (car !== undefined && car.endedAt === null) await once(stalled, 'response')
    expect(car?.aborted).toBe(true)
  })

  it('no end game with hedging off, nor for a run without leaf sizes: the slow run is left to its gateway', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(8, 41)
    for (const [init, withSizes] of [[{ hedgeAfterMs: 0 }, true], [{}, false]] as const) {
      const [fast, slow] = await gateways([null, null], store) as [TestGateway, TestGateway]
      slow.setMaxBytesPerSecond(8 * 1024 * 1024)
      const { pool: p, events } = pool([fast, slow], init)
      const signal = new AbortController().signal
      const sizes = (n: number): number[] | undefined => withSizes ? new Array<number>(n).fill(LEAF) : undefined
      p.prefetchRun(file, { from: 0, to: 2 * LEAF - 1, sizes: sizes(2) }, leaves.slice(0, 2), signal)
      p.prefetchRun(file, { from: 2 * LEAF, to: 8 * LEAF - 1, sizes: sizes(6) }, leaves.slice(2), signal)
      const got = await Promise.all(leaves.map(async (cid) => await p.get(cid)))
      expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true)
      expect(events.filter((e) => e.type === 'hedge')).toEqual([])
      expect(fast.requests).toHaveLength(1)
      expect(slow.requests).toHaveLength(1)
      expect(slow.requests[0]?.bytesSent).toBeGreaterThanOrEqual(6 * LEAF)
    }
  })

  it('streams the first bytes of an entity before its DAG is known: its root and the expected blocks come from that one request', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(16, 43)
    const [gw] = await gateways([null], store) as [TestGateway]
    const { pool: p } = pool([gw])
    const signal = new AbortController().signal
    const stream = p.prefetchEntity(file, { from: 0, to: 1024 * 1024 - 1, nodes: 2 }, signal)
    expect(stream).toBeDefined()
    expect(p.prefetchEntity(file, { from: 0, to: 1 }, signal)).toBeUndefined() // one per pool
    for (const leaf of leaves.slice(0, 4)) stream?.expect(leaf)
    // not expected and not in the range: asked for at once, not after the stream
    const beyond = p.get(leaves[15] as CID)
    expect(dagPb.decode(await p.get(file)).Links).toHaveLength(16)
    const first = await Promise.all(leaves.slice(0, 4).map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(first).equals(Buffer.from(data.subarray(0, 1024 * 1024)))).toBe(true)
    expect(Buffer.from(await beyond).equals(Buffer.from(data.subarray(15 * 256 * 1024)))).toBe(true)
    expect(gw.requests.map((r) => [r.format, new URL(r.url, gw.url).searchParams.get('entity-bytes')])).toEqual([
      ['car', `0:${1024 * 1024 - 1}`],
      ['raw', null]
    ])
    // taken once: a second get of a streamed leaf asks a gateway
    await p.get(leaves[0] as CID)
    expect(gw.requests).toHaveLength(3)
  })

  it('the entity stream is best effort: a gateway that lies in it is dropped and the blocks come from another; one that refuses it still serves runs', async () => {
    const { store, data, file, leaves } = await fileOfLeaves(8, 47)
    const [liar, good] = await gateways([null, null], store) as [TestGateway, TestGateway]
    liar.addFault({ fault: { type: 'flip', atByte: 2000 }, match: { format: 'car' } })
    const { pool: p, events } = pool([liar, good])
    const signal = new AbortController().signal
    const stream = p.prefetchEntity(file, { from: 0, to: data.length - 1, nodes: 1 }, signal)
    for (const leaf of leaves) stream?.expect(leaf)
    const got = await Promise.all([file, ...leaves].map(async (cid) => await p.get(cid)))
    expect(Buffer.concat(got.slice(1)).equals(Buffer.from(data))).toBe(true)
    expect(statsOf(p, liar)).toMatchObject({ dropped: true, invalidBlocks: 1 })
    expect(events).toContainEqual(expect.objectContaining({ type: 'gateway', gateway: liar.url, state: 'dropped' }))
    expect(good.requests.length).toBeGreaterThan(0)

    const [refuses] = await gateways([{ type: 'status', status: 501 }], store) as [TestGateway]
    const { pool: q } = pool([refuses])
    q.prefetchEntity(file, { from: 0, to: data.length - 1 }, signal)
    await expect(q.get(file)).rejects.toThrow() // 501 for everything: nothing to get
    refuses.clearFaults()
    // a refused entity stream says nothing of runs: the gateway is still asked for one
    expect(q.prefetchRun(file, { from: 0, to: 2 * 256 * 1024 - 1 }, leaves.slice(0, 2), signal)).toBe(true)
    await Promise.all(leaves.slice(0, 2).map(async (cid) => await q.get(cid)))
    expect(refuses.requests.filter((r) => r.format === 'car' && r.status === 200)).toHaveLength(1)
  })

  it('shares a fetch between concurrent gets of one block; a waiter that aborts does not cancel it for the others', async () => {
    const [a, b] = await gateways([{ type: 'latency', ms: 50 }, { type: 'latency', ms: 50 }]) as [TestGateway, TestGateway]
    const { pool: p } = pool([a, b], { hedgeAfterMs: 0 })
    const [cid, bytes] = all[3] as [CID, Uint8Array]
    const quitter = new AbortController()
    const gets = [p.get(cid), p.get(cid), p.get(cid, quitter.signal)]
    quitter.abort(new Error('not needed'))
    await expect(gets[2]).rejects.toThrow('not needed')
    const [one, two] = await Promise.all(gets.slice(0, 2))
    expect(one).toEqual(bytes)
    expect(two).toBe(one)
    expect(a.requests.length + b.requests.length).toBe(1)
    // Once settled, a new get fetches again (the pool is not a cache).
    await p.get(cid)
    expect(a.requests.length + b.requests.length).toBe(2)
  })

  it('identity CIDs never touch the network; unverifiable hashes fail before it', async () => {
    const [a] = await gateways([null]) as [TestGateway]
    const { pool: p } = pool([a])
    const data = new TextEncoder().encode('inline block')
    expect(await p.get(CID.createV1(raw.code, identity.digest(data)))).toEqual(data)
    const err = await rejection(p.get(CID.createV1(raw.code, Digest.create(0x1e, new Uint8Array(32)))))
    expect(err.code).toBe('CIDGET_ERR_DAG_INVALID')
    expect(a.requests.length).toBe(0)
  })

  it('honours Retry-After: the gateway is blocked while the others serve', async () => {
    const [a, b] = await gateways([null, null]) as [TestGateway, TestGateway]
    a.addFault({ fault: { type: 'status', status: 503, retryAfter: 2 }, times: 1 })
    const { pool: p, events } = pool([a, b], { hedgeAfterMs: 0 })
    const [first, ...rest] = all.slice(0, 10)
    const before = Date.now()
    // The first pick is the first gateway (untried gateways tie, list order decides).
    expect(await p.get((first as [CID, Uint8Array])[0])).toEqual((first as [CID, Uint8Array])[1])
    expect(a.requests.map((r) => r.status)).toEqual([503])
    const blocked = statsOf(p, a).blockedUntil
    expect(blocked).toBeGreaterThanOrEqual(before + 2000)
    expect(blocked).toBeLessThanOrEqual(Date.now() + 2000)
    expect(events).toContainEqual(expect.objectContaining({ type: 'gateway', gateway: a.url, state: 'blocked', reason: expect.stringContaining('Retry-After') as unknown }))
    expect(events).toContainEqual(expect.objectContaining({ type: 'retry', gateway: a.url, code: 'CIDGET_ERR_HTTP_STATUS', delayMs: 0 }))
    await Promise.all(rest.map(async ([cid]) => await p.get(cid)))
    expect(a.requests.length).toBe(1)
    expect(b.requests.length).toBe(10)
  })

  it('waits out Retry-After (capped) when no other gateway can serve', async () => {
    const [a] = await gateways([null]) as [TestGateway]
    a.addFault({ fault: { type: 'status', status: 429, retryAfter: 3 }, times: 1 })
    a.addFault({ fault: { type: 'status', status: 503, retryAfter: 3600 }, times: 1 })
    const time = fakeTime()
    const { pool: p } = pool([a], { now: time.now, sleep: time.sleep, maxRetryAfterMs: 10_000 })
    const [cid, bytes] = all[0] as [CID, Uint8Array]
    expect(await p.get(cid)).toEqual(bytes)
    expect(time.sleeps).toEqual([3000, 10_000])
    expect(a.requests.map((r) => r.status)).toEqual([429, 503, 200])
  })

  it('backs a failing gateway off on its consecutive errors, then reports it healthy', async () => {
    const [a] = await gateways([null]) as [TestGateway]
    a.addFault({ fault: { type: 'status', status: 500 }, times: 2 })
    const time = fakeTime()
    const { pool: p, events } = pool([a], {
      now: time.now,
      sleep: time.sleep,
      random: () => 0.5, // no jitter
      backoff: { initialMs: 100, multiplier: 2, maxMs: 1000 }
    })
    await p.get((all[1] as [CID, Uint8Array])[0])
    expect(time.sleeps).toEqual([100, 200])
    expect(events.filter((e) => e.type === 'retry').map((e) => e.type === 'retry' && e.delayMs)).toEqual([100, 200])
    expect(events.at(-2)).toEqual({ type: 'gateway', gateway: a.url, state: 'healthy', reason: expect.any(String) as unknown })
    expect(statsOf(p, a)).toMatchObject({ requests: 3, successes: 1, errors: 2, dropped: false })
    expect(statsOf(p, a).reliability).toBeCloseTo(1 / (3 + 2 * 3))
  })

  it('hedges a slow request on another gateway; the first valid block wins and the other request is aborted', async () => {
    // the slow answer would take a minute, and no timeout ends it: only the hedge gets the block sooner
    const [slow, fast] = await gateways([{ type: 'latency', ms: 60_000 }, null]) as [TestGateway, TestGateway]
    const { pool: p, events } = pool([slow, fast], { http: patient, hedgeAfterMs: 50 })
    const [cid, bytes] = all[2] as [CID, Uint8Array]
    expect(await within(20_000, p.get(cid), 'the block still waits for the slow gateway')).toEqual(bytes)
    expect(events).toContainEqual({ type: 'hedge', cid: cid.toString(), from: slow.url, to: fast.url })
    expect(events).toContainEqual(expect.objectContaining({ type: 'block', gateway: fast.url }))
    const loser = slow.requests[0]
    if (loser !== undefined && loser.endedAt === null) await once(slow, 'response')
    expect(loser?.aborted).toBe(true)
    expect(statsOf(p, slow)).toMatchObject({ requests: 1, successes: 0, errors: 0, inFlight: 0 })
    expect(statsOf(p, slow).reliability).toBe(0) // out-raced: an attempt without a success
  })

  it('a failed hedge leaves the first request running; it still delivers', async () => {
    const [slow, failing] = await gateways([{ type: 'latency', ms: 250 }, { type: 'status', status: 500 }]) as [TestGateway, TestGateway]
    const { pool: p, events } = pool([slow, failing], { hedgeAfterMs: 30 })
    const [cid, bytes] = all[6] as [CID, Uint8Array]
    expect(await p.get(cid)).toEqual(bytes)
    expect(events).toContainEqual(expect.objectContaining({ type: 'block', gateway: slow.url }))
    expect(events).toContainEqual({ type: 'hedge', cid: cid.toString(), from: slow.url, to: failing.url })
    const retries = events.filter((e) => e.type === 'retry')
    expect(retries.length).toBeGreaterThan(0)
    // The slow request was still running each time: nothing to wait for.
    expect(retries.every((e) => e.type === 'retry' && e.gateway === failing.url && e.delayMs === 0)).toBe(true)
    expect(slow.requests.length).toBe(1)
    // hedges count against the block's budget (6 for two gateways)
    expect(failing.requests.length).toBeLessThanOrEqual(6)
  })

  it('adaptive hedging: 1 s before any block has arrived, then max(250 ms, 4 × the EWMA latency)', async () => {
    const [slow, fast] = await gateways([{ type: 'latency', ms: 300 }, null]) as [TestGateway, TestGateway]
    const time = fakeTime()
    const { pool: p, events } = pool([slow, fast], { now: time.now, sleep: time.sleep })
    await p.get((all[7] as [CID, Uint8Array])[0])
    expect(time.sleeps[0]).toBe(1000)
    expect(events.filter((e) => e.type === 'hedge')).toHaveLength(1)
    // One block so far, from the fast gateway: the pool's latency is its latency.
    const latency = statsOf(p, fast).latencyMs
    expect(latency).toBeGreaterThan(0)
    await p.get((all[8] as [CID, Uint8Array])[0])
    expect(time.sleeps[1]).toBe(Math.max(250, 4 * latency))
  })

  it('hedgeAfterMs 0 disables hedging', async () => {
    const [slow, fast] = await gateways([{ type: 'latency', ms: 150 }, null]) as [TestGateway, TestGateway]
    const { pool: p, events } = pool([slow, fast], { hedgeAfterMs: 0 })
    await p.get((all[2] as [CID, Uint8Array])[0])
    expect(events.some((e) => e.type === 'hedge')).toBe(false)
    expect(fast.requests.length).toBe(0)
  })

  it('404 on one gateway: the block comes from another, and the gateway keeps serving other blocks', async () => {
    const [cid, bytes] = all[4] as [CID, Uint8Array]
    const partial = new MemoryBlocks()
    for (const [c, b] of all) if (!c.equals(cid)) partial.put(c, b)
    const [lacking] = await gateways([null], partial) as [TestGateway]
    const [full] = await gateways([{ type: 'latency', ms: 30 }]) as [TestGateway]
    const { pool: p } = pool([lacking, full], { hedgeAfterMs: 0, perGatewayConcurrency: 2 })
    expect(await p.get(cid)).toEqual(bytes)
    expect(lacking.requests.map((r) => r.status)).toEqual([404])
    expect(statsOf(p, lacking)).toMatchObject({ notFound: 1, errors: 1, dropped: false, blockedUntil: 0 })
    // Ranked lower (reliability 0 after its 404), but still used for blocks it has when the other is busy.
    await Promise.all(all.slice(5, 11).map(async ([c]) => await p.get(c)))
    expect(lacking.requests.slice(1).map((r) => r.status)).toContain(200)
    expect(statsOf(p, lacking).successes).toBeGreaterThan(0)
  })

  it('NOT_FOUND when every gateway answers 404', async () => {
    const gws = await gateways([null, null, null])
    const { pool: p, events } = pool(gws)
    const missing = CID.createV1(raw.code, await sha256.digest(Uint8Array.of(4, 0, 4)))
    const err = await rejection(p.get(missing))
    expect(err.code).toBe('CIDGET_ERR_NOT_FOUND')
    expect(err.message).toContain(missing.toString())
    for (const gw of gws) expect(gw.requests.map((r) => r.status)).toEqual([404])
    expect(events.filter((e) => e.type === 'retry')).toHaveLength(2)
  })

  it('BLOCK_UNAVAILABLE after maxAttemptsPerBlock failed attempts', async () => {
    const gws = await gateways([{ type: 'status', status: 500 }, { type: 'status', status: 502 }])
    const time = fakeTime()
    const { pool: p } = pool(gws, { now: time.now, sleep: time.sleep, hedgeAfterMs: 0 })
    const [cid] = all[0] as [CID, Uint8Array]
    const err = await rejection(p.get(cid))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_UNAVAILABLE')
    expect(err.message).toContain(cid.toString())
    expect(err.message).toMatch(/HTTP 50[02]/)
    expect((err.cause as CidgetError).code).toBe('CIDGET_ERR_HTTP_STATUS')
    // default budget: 3 per gateway
    expect(gws.reduce((n, g) => n + g.requests.length, 0)).toBe(6)
  })

  it('every gateway dropped: the block that caused it fails as invalid, later blocks as unavailable, without asking again', async () => {
    const gws = await gateways([{ type: 'wrong-block' }, { type: 'wrong-block' }])
    const { pool: p } = pool(gws)
    const err = await rejection(p.get((all[0] as [CID, Uint8Array])[0]))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_INVALID')
    expect(err.message).toContain('2 dropped')
    expect((err.cause as CidgetError).code).toBe('CIDGET_ERR_BLOCK_INVALID')
    const next = await rejection(p.get((all[1] as [CID, Uint8Array])[0]))
    expect(next.code).toBe('CIDGET_ERR_BLOCK_UNAVAILABLE')
    expect(gws.map((g) => g.requests.length)).toEqual([1, 1])
  })

  it('an oversized answer drops the gateway like an invalid block', async () => {
    const [cid, bytes] = all.find(([c]) => c.code === raw.code) as [CID, Uint8Array]
    // This gateway's store holds 100 kB of garbage under the leaf's CID, sent without a length.
    const bloated = new MemoryBlocks()
    bloated.put(cid, seededBytes(100_000, 99))
    const [big] = await gateways([{ type: 'no-length' }], bloated) as [TestGateway]
    const [good] = await gateways([null]) as [TestGateway]
    const { pool: p, events } = pool([big, good], { maxBlockBytes: 10_000, hedgeAfterMs: 0 })
    expect(await p.get(cid)).toEqual(bytes)
    expect(statsOf(p, big)).toMatchObject({ dropped: true, invalidBlocks: 1 })
    expect(events).toContainEqual(expect.objectContaining({ type: 'gateway', gateway: big.url, state: 'dropped', reason: expect.stringContaining('10000-byte limit') as unknown }))
    expect(statsOf(p, good)).toMatchObject({ dropped: false, successes: 1 })
  })

  it('abort is prompt while waiting for a blocked gateway, in flight, queued for a permit, or before the call', async () => {
    const [a] = await gateways([null]) as [TestGateway]
    a.addFault({ fault: { type: 'status', status: 503, retryAfter: 60 }, times: 1 })
    const { pool: p } = pool([a], { http: patient, concurrency: 1, hedgeAfterMs: 0 })
    const reason = new Error('user pressed pause')
    // Each wait below would last a minute (no timeout ends it): "prompt" is well within that, with
    // room for a loaded machine.
    const PROMPT_MS = 10_000

    // waiting out a 60 s Retry-After (real sleep)
    const c1 = new AbortController()
    const waiting = p.get((all[0] as [CID, Uint8Array])[0], c1.signal)
    if (a.requests[0]?.endedAt == null) await once(a, 'response')
    await new Promise((resolve) => setTimeout(resolve, 20))
    c1.abort(reason)
    await within(PROMPT_MS, expect(waiting).rejects.toBe(reason), 'not aborted')

    // in flight, and queued behind it for the only permit
    a.setFaults([{ fault: { type: 'latency', ms: 60_000 } }])
    const p2 = new GatewayPool({ gateways: [a.url], http: patient, concurrency: 1, hedgeAfterMs: 0 })
    a.requests.length = 0
    const c2 = new AbortController()
    const c3 = new AbortController()
    const inFlight = p2.get((all[1] as [CID, Uint8Array])[0], c2.signal)
    const queued = p2.get((all[2] as [CID, Uint8Array])[0], c3.signal)
    if (a.requests.length === 0) await once(a, 'request')
    c3.abort(reason)
    await within(PROMPT_MS, expect(queued).rejects.toBe(reason), 'the queued call is not aborted')
    c2.abort(reason)
    await within(PROMPT_MS, expect(inFlight).rejects.toBe(reason), 'the call in flight is not aborted')
    // the abandoned request is cancelled at the gateway, and the permit comes back
    if (a.requests[0]?.endedAt === null) await once(a, 'response')
    expect(a.requests[0]?.aborted).toBe(true)
    expect(a.requests.length).toBe(1)
    a.clearFaults()
    expect(await p2.get((all[2] as [CID, Uint8Array])[0])).toEqual((all[2] as [CID, Uint8Array])[1])

    // already aborted
    await expect(p2.get((all[3] as [CID, Uint8Array])[0], AbortSignal.abort(reason))).rejects.toBe(reason)
  })

  it('never has more than `concurrency` requests in flight, nor more than `perGatewayConcurrency` on one gateway', async () => {
    const gws = await gateways([{ type: 'latency', ms: 30 }, { type: 'latency', ms: 30 }])
    const probe = concurrencyProbe(gws)
    const { pool: p } = pool(gws, { concurrency: 5, perGatewayConcurrency: 4, hedgeAfterMs: 0 })
    await Promise.all(all.map(async ([cid]) => await p.get(cid)))
    expect(probe.max()).toBe(5)
    expect(probe.maxPer()).toBeLessThanOrEqual(4)

    const single = await gateways([{ type: 'latency', ms: 30 }])
    const probe1 = concurrencyProbe(single)
    const { pool: p1 } = pool(single, { concurrency: 16, perGatewayConcurrency: 3, hedgeAfterMs: 0 })
    await Promise.all(all.map(async ([cid]) => await p1.get(cid)))
    expect(probe1.max()).toBe(3)
  })

  it('refuses unknown or invalid options', () => {
    const bad = (init: object): string | undefined => {
      try {
        // Deliberately malformed input: the constructor must refuse it at run time.
        new GatewayPool(init as GatewayPoolInit)
        return undefined
      } catch (err) {
        return (err as CidgetError).code
      }
    }
    expect(bad({ gateways: [], http })).toBe('CIDGET_ERR_BAD_OPTION')
    expect(bad({ gateways: ['ftp://x'], http })).toBe('CIDGET_ERR_BAD_OPTION')
    expect(bad({ gateways: ['http://x'], http, concurency: 4 })).toBe('CIDGET_ERR_BAD_OPTION')
    expect(bad({ gateways: ['http://x'], http, concurrency: 0 })).toBe('CIDGET_ERR_BAD_OPTION')
    expect(bad({ gateways: ['http://x'], http, hedgeAfterMs: -1 })).toBe('CIDGET_ERR_BAD_OPTION')
    expect(bad({ gateways: ['http://x/', 'http://x'], http })).toBeUndefined()
    expect(new GatewayPool({ gateways: ['http://x/', 'http://x'], http }).stats().map((s) => s.url)).toEqual(['http://x'])
  })
})
